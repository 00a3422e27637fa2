"""`clinseek models export`: a torch module -> ONNX + model card, checked against torch before the card is written.

`export_model` is the library entry; `export_torchxrayvision` builds torchxrayvision's DenseNet from a local
weights file (never downloads) and exports its logits, with the package's per-label operating points as the card's
thresholds on the sigmoid (equivalent to torchxrayvision's op_norm at 0.5). Needs the `train` extra.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from clinseek.errors import UserError

from .card import CARD_SCHEMA, ModelCard, sha256_file

# torchxrayvision weights this command knows how to export (name -> how its card describes the training data).
XRV_MODELS = {
    "densenet121-res224-all": "NIH, PadChest, CheXpert, MIMIC-CXR, Google, OpenI, RSNA (torchxrayvision 'all')",
}
AGREEMENT_TOL = 1e-4


def export_model(net, out_dir: Path, *, name: str, labels: list[str], input_size: int, channels: int = 1,
                 preprocess: dict | None = None, activation: str = "sigmoid", thresholds: dict | None = None,
                 training_data: str = "unknown", source: str | None = None, license: str | None = None,
                 intended_use: str = "Research on chest X-ray classification; not for patient care.",
                 limitations: list[str] | None = None, evaluation: dict | None = None, opset: int = 17) -> Path:
    """Export `net` (N, C, S, S) -> (N, labels) to <out_dir>/<name>.onnx with its card; return the card path.

    The export is verified: ONNX Runtime must reproduce torch's outputs on random inputs within 1e-4, else
    nothing is written.
    """
    import torch

    out_dir = Path(out_dir)
    onnx_path = out_dir / f"{name}.onnx"
    net = net.eval()
    export_onnx(net, onnx_path, input_size, channels=channels, opset=opset)
    diff = torch_ort_max_diff(net, onnx_path, input_size, channels)
    if diff > AGREEMENT_TOL:
        onnx_path.unlink(missing_ok=True)
        raise UserError(f"ONNX Runtime differs from torch by {diff:.2e} (> {AGREEMENT_TOL}) on the same inputs; "
                        "the export is not faithful", hint="check for data-dependent control flow in forward()")
    with torch.no_grad():
        n_out = net(torch.zeros(1, channels, input_size, input_size)).shape[-1]
    if n_out != len(labels):
        onnx_path.unlink(missing_ok=True)
        raise UserError(f"the model has {n_out} outputs but {len(labels)} labels were given")
    card = ModelCard.model_validate({
        "schema": CARD_SCHEMA, "name": name, "weights": onnx_path.name, "labels": labels,
        "input": {"size": input_size, "channels": channels, "name": "image"},
        "preprocess": preprocess or {"resize": input_size, "crop": "center", "scaling": "unit"},
        "output": {"activation": activation, "name": "logits"},
        "thresholds": thresholds or {},
        "provenance": {"training_data": training_data, "weights_sha256": sha256_file(onnx_path),
                       "source": source, "license": license},
        "evaluation": evaluation,
        "intended_use": intended_use,
        "limitations": limitations or [],
    })
    card_path = out_dir / f"{name}.yaml"
    card_path.write_text(card.to_yaml(), encoding="utf-8")
    return card_path


def torch_ort_max_diff(net, onnx_path: Path, input_size: int, channels: int = 1, batch: int = 3,
                       inputs: np.ndarray | None = None) -> float:
    """Largest absolute difference between torch and ONNX Runtime (CPU) outputs on the same inputs."""
    import onnxruntime as ort
    import torch

    if inputs is None:
        inputs = np.random.default_rng(0).standard_normal((batch, channels, input_size, input_size)).astype(np.float32)
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(inputs)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: inputs})[0]
    return float(np.abs(ref - got).max())


def load_module(ref: str, weights: Path | None):
    """`pkg.mod:factory` -> factory() (a torch module), with weights from a state_dict or pickled module."""
    mod_name, _, attr = ref.partition(":")
    if not attr:
        raise UserError(f"--module must look like package.module:factory, got {ref!r}")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot import {ref}: {exc}") from None
    net = factory()
    if weights is not None:
        _load_weights(net, weights)
    return net


def _load_weights(net, weights: Path) -> None:
    import torch

    if not Path(weights).is_file():
        raise UserError(f"weights file not found: {weights}", hint="download the weights where the site allows "
                                                                  "it and pass their local path with --weights")
    try:
        obj: Any = torch.load(str(weights), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise UserError(f"cannot read weights {weights}: {exc}") from None
    state = obj.state_dict() if hasattr(obj, "state_dict") else obj
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        net.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"the weights in {weights} do not fit the model: {exc}") from None


def export_torchxrayvision(model_name: str, weights: Path | None, out_dir: Path, name: str | None = None) -> Path:
    """Export a torchxrayvision classifier from a local weights file. Exit 2 with a clear message when the package
    or the weights are not available (this never downloads)."""
    if model_name not in XRV_MODELS:
        raise UserError(f"unknown torchxrayvision model {model_name!r}; supported: {', '.join(XRV_MODELS)}")
    if weights is None or not Path(weights).is_file():
        raise UserError(f"the weights of {model_name} are not available" + (f" at {weights}" if weights else ""),
                        hint="download them where your site allows (torchxrayvision's release page lists the "
                             ".pt file) and pass --weights PATH; clinseek never downloads weights")
    try:
        import torchxrayvision as xrv
    except ImportError:
        raise UserError("exporting a torchxrayvision model needs the torchxrayvision package",
                        hint="pip install torchxrayvision (its DenseNet class defines the architecture)") from None
    key = model_name.rsplit("-", 1)[-1]  # 'all'
    info = xrv.models.model_urls.get(model_name) or xrv.models.model_urls.get(key) or {}
    net = xrv.models.DenseNet(weights=None, num_classes=len(info.get("labels", [])) or 18)
    _load_weights(net, Path(weights))
    net.op_threshs = None  # export logits: op_norm's per-element branches cannot be traced
    labels = list(info.get("labels") or getattr(net, "pathologies", []))
    op = info.get("op_threshs")
    thresholds = {lab: float(t) for lab, t in zip(labels, op)} if op else {}
    return export_model(
        net, out_dir, name=name or model_name.replace("-", "_"), labels=labels, input_size=224, channels=1,
        preprocess={"resize": 224, "crop": "center", "scaling": "xrv"}, activation="sigmoid",
        thresholds=thresholds, training_data=XRV_MODELS[model_name],
        source=f"torchxrayvision {getattr(xrv, '__version__', '?')} {model_name} ({Path(weights).name})",
        license="Apache-2.0 (torchxrayvision); check each training set's terms",
        intended_use="Research; the operating thresholds are torchxrayvision's published ones.",
        limitations=["Frontal views; trained on public datasets with label noise.", "Not a medical device."])


def export_onnx(net, path: Path, input_size: int, channels: int = 1, input_name: str = "image",
                output_name: str = "logits", opset: int = 17) -> None:
    """Export with a dynamic batch axis through the TorchScript exporter (no onnxscript needed)."""
    import torch

    net.eval()
    dummy = torch.zeros(1, channels, input_size, input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(net, (dummy,), str(path), dynamo=False, input_names=[input_name],
                          output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True)
