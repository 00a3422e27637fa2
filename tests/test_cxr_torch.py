"""The torch side (the `train` extra): torch/ONNX Runtime agreement, `models export`, phantom training."""
from __future__ import annotations

import numpy as np
import pytest

from clinseek_cxr.card import load_card, sha256_file
from test_cxr_models import PHANTOM, _exit_code, _run
from clinseek_cxr.commands import models
from clinseek_demo.cli import data

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")


def test_committed_phantom_agrees_with_torch_within_1e4():
    """The committed ONNX file against the torch model rebuilt from the committed torch weights."""
    from clinseek_demo.cxr_images import render_cxr
    from clinseek_cxr.export import torch_ort_max_diff
    from clinseek_cxr.images import preprocess
    from clinseek_demo.phantom import build_net, load_state

    card = load_card(PHANTOM)
    net = load_state(build_net(), PHANTOM.with_name("phantom_cxr.torch.npz")).eval()
    imgs = np.stack([preprocess(render_cxr(frozenset(f), np.random.default_rng(i)).astype(np.float32) / 255, card)
                     for i, f in enumerate([(), ("cardiomegaly",), ("pneumothorax", "pleural_effusion")])])
    assert torch_ort_max_diff(net, card.weights_path, 128, inputs=imgs) <= 1e-4
    noise = np.random.default_rng(1).standard_normal((4, 1, 128, 128)).astype(np.float32)
    assert torch_ort_max_diff(net, card.weights_path, 128, inputs=noise) <= 1e-4


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, stride=2)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def tiny_factory():
    torch.manual_seed(0)
    return _Tiny()


def test_export_model_writes_a_card_that_models_check_accepts(tmp_path):
    from clinseek_cxr.export import export_model

    card_path = export_model(tiny_factory(), tmp_path, name="tiny", labels=["a", "b", "c"], input_size=32,
                             thresholds={"a": 0.3}, training_data="nothing")
    card = load_card(card_path)
    assert card.sha256 == sha256_file(tmp_path / "tiny.onnx") and card.threshold("a") == 0.3
    r = _run(models, ["check", str(card_path)])
    assert r.exit_code == 0, r.output


def test_models_export_cli_with_a_module_and_a_state_dict(tmp_path):
    weights = tmp_path / "w.pt"
    torch.save(tiny_factory().state_dict(), weights)
    r = _run(models, ["export", "--module", "test_cxr_torch:tiny_factory", "--weights", str(weights),
                      "--labels", "a,b,c", "--input-size", "32", "--out", str(tmp_path / "out"), "--name", "tiny"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "tiny.yaml").is_file()
    r = _run(models, ["export", "--module", "test_cxr_torch:tiny_factory", "--labels", "a,b",
                      "--input-size", "32", "--out", str(tmp_path / "out2")])
    assert _exit_code(r) == 2 and "3 outputs but 2 labels" in str(r.exception)


def test_torchxrayvision_export_without_weights_says_so_with_exit_2(tmp_path):
    r = _run(models, ["export", "--torchxrayvision", "densenet121-res224-all", "--weights",
                      str(tmp_path / "missing.pt"), "--out", str(tmp_path)])
    assert _exit_code(r) == 2
    assert "weights of densenet121-res224-all are not available" in str(r.exception)
    assert "never downloads" in str(r.exception)


@pytest.mark.slow
def test_train_phantom_is_deterministic_for_a_seed(tmp_path):
    """Two small trainings with one seed give byte-identical ONNX files (the full artifact: see the slow test)."""
    from clinseek_demo.phantom import PhantomPlan, train_phantom

    plan = PhantomPlan(seed=3, n_train=48, n_val=24, n_test=24, epochs=1, batch=16)
    a = train_phantom(tmp_path / "a", plan, log=lambda m: None)
    b = train_phantom(tmp_path / "b", plan, log=lambda m: None)
    assert sha256_file(a.with_suffix(".onnx")) == sha256_file(b.with_suffix(".onnx"))
    c = train_phantom(tmp_path / "c", PhantomPlan(seed=4, n_train=48, n_val=24, n_test=24, epochs=1, batch=16),
                      log=lambda m: None)
    assert sha256_file(c.with_suffix(".onnx")) != sha256_file(a.with_suffix(".onnx"))
    assert load_card(a).evaluation.n == 24


@pytest.mark.slow
def test_train_phantom_reproduces_the_committed_artifact(tmp_path):
    """`clinseek data train-phantom --out DIR --seed 0` rebuilds the shipped phantom_cxr.onnx byte for byte."""
    r = _run(data, ["train-phantom", "--out", str(tmp_path), "--seed", "0"])
    assert r.exit_code == 0, r.output
    assert sha256_file(tmp_path / "phantom_cxr.onnx") == load_card(PHANTOM).sha256
    assert sha256_file(tmp_path / "phantom_cxr.torch.npz") == sha256_file(PHANTOM.with_name("phantom_cxr.torch.npz"))


class DenseNet(torch.nn.Module):
    """Stand-in for torchxrayvision.models.DenseNet (module level, so torch.save can pickle it as xrv's files do)."""

    def __init__(self, weights=None, num_classes=18):
        super().__init__()
        assert weights is None  # the export never asks the package to download
        self.conv = torch.nn.Conv2d(1, 4, 7, stride=4)
        self.classifier = torch.nn.Linear(4, num_classes)
        self.op_threshs = [0.1, 0.2, 0.3]

    def forward(self, x):
        out = self.classifier(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        if self.op_threshs is not None:  # data-dependent like op_norm: must be off when exporting
            out = torch.sigmoid(out) * 0
        return out


def test_torchxrayvision_export_path_with_a_stand_in_package(tmp_path, monkeypatch):
    """The export path for torchxrayvision, run against a stand-in package shaped like it (the real weights are
    not available offline): labels and operating points go to the card, op_norm is switched off for tracing."""
    import sys
    import types

    labels = ["Atelectasis", "Effusion", "Cardiomegaly"]

    xrv = types.ModuleType("torchxrayvision")
    xrv.__version__ = "stand-in"
    xrv.models = types.SimpleNamespace(DenseNet=DenseNet, model_urls={"all": {"labels": labels,
                                                                              "op_threshs": [0.1, 0.2, 0.3]}})
    monkeypatch.setitem(sys.modules, "torchxrayvision", xrv)
    torch.manual_seed(0)
    trained = DenseNet(num_classes=3)
    weights = tmp_path / "xrv.pt"
    torch.save(trained, weights)  # torchxrayvision's .pt files hold a whole pickled model
    r = _run(models, ["export", "--torchxrayvision", "densenet121-res224-all", "--weights", str(weights),
                      "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    card = load_card(tmp_path / "out" / "densenet121_res224_all.yaml")
    assert card.labels == labels and card.thresholds == {"Atelectasis": 0.1, "Effusion": 0.2, "Cardiomegaly": 0.3}
    assert card.preprocess.scaling == "xrv" and card.input.size == 224 and card.output.activation == "sigmoid"
    from clinseek_cxr.export import torch_ort_max_diff

    trained.op_threshs = None
    assert torch_ort_max_diff(trained, card.weights_path, 224) <= 1e-4  # the trained weights, not fresh ones
