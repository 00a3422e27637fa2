"""Model cards, `clinseek models check|export|train-phantom`, `clinseek cxr classify`, torch/ONNX agreement."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from clinseek.errors import UserError
from clinseek_cxr.card import load_card, models_dir, resolve_card_path, sha256_file
from clinseek_cxr.commands import cxr, models

PHANTOM = models_dir() / "phantom_cxr.yaml"


def _run(cmd, args):
    """Invoke a click command the way `clinseek` does: a UserError ends as exit code 2 with one message."""
    from clinseek.cli import cli

    runner = CliRunner()
    return runner.invoke(cli, [cmd.name, *args], catch_exceptions=True)


def _exit_code(result):
    if isinstance(result.exception, UserError):
        return 2
    return result.exit_code


def _copy_phantom(tmp_path) -> Path:
    for suffix in (".yaml", ".onnx"):
        shutil.copy(PHANTOM.with_suffix(suffix), tmp_path / PHANTOM.with_suffix(suffix).name)
    return tmp_path / PHANTOM.name


# Cards ---------------------------------------------------------------------------------------------------------
def test_committed_phantom_card_is_valid_small_and_reports_heldout_auroc():
    card = load_card(PHANTOM)
    assert card.labels == ["cardiomegaly", "pleural_effusion", "consolidation", "pulmonary_edema", "pneumothorax"]
    assert card.weights_path.stat().st_size < 2_000_000
    assert sha256_file(card.weights_path) == card.sha256
    assert set(card.evaluation.auroc) == set(card.labels)
    assert all(0.5 < v <= 1.0 for v in card.evaluation.auroc.values())
    assert set(card.thresholds) == set(card.labels)
    assert resolve_card_path("phantom") == PHANTOM


@pytest.mark.parametrize("change,match", [
    ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ({"labels": ["a", "a"]}, "labels must be unique"),
    ({"thresholds": {"nope": 0.5}}, "thresholds for unknown label"),
    ({"thresholds": {"cardiomegaly": 1.5}}, "within \\[0, 1\\]"),
    ({"preprocess": {"scaling": "mean_std"}}, "needs both 'mean' and 'std'"),
    ({"input": {"size": 128, "channels": 2}}, "input.channels"),
    ({"provenance": {"training_data": "x", "weights_sha256": "abc"}}, "weights_sha256"),
])
def test_invalid_cards_name_the_field(tmp_path, change, match):
    data = yaml.safe_load(PHANTOM.read_text())
    data.update(change)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=match) as info:
        load_card(p)
    assert str(p) in info.value.render()


def test_models_check_passes_on_the_phantom():
    r = _run(models, ["check", str(PHANTOM), "--providers", "cpu"])
    assert r.exit_code == 0, r.output
    assert "sha256" in r.output and "ok" in r.output
    assert "providers  CPUExecutionProvider" in r.output
    assert "dry run    ok: batch of 2" in r.output


def test_models_check_catches_a_changed_weights_file(tmp_path):
    card = _copy_phantom(tmp_path)
    onnx = card.with_suffix(".onnx")
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    r = _run(models, ["check", str(card)])
    assert _exit_code(r) == 2 and "sha256 mismatch" in str(r.exception)


def test_models_check_catches_wrong_shapes(tmp_path):
    card = _copy_phantom(tmp_path)
    data = yaml.safe_load(card.read_text())
    data["input"]["size"] = 96
    data["preprocess"]["resize"] = 96
    card.write_text(yaml.safe_dump(data))
    r = _run(models, ["check", str(card)])
    assert _exit_code(r) == 2 and "the card says [N, 1, 96, 96]" in str(r.exception)
    data["input"]["size"] = data["preprocess"]["resize"] = 128
    data["labels"] = data["labels"][:4]
    data["thresholds"] = {k: v for k, v in data["thresholds"].items() if k in data["labels"]}
    data["evaluation"]["auroc"] = {}
    card.write_text(yaml.safe_dump(data))
    r = _run(models, ["check", str(card)])
    assert _exit_code(r) == 2 and "lists 4 labels" in str(r.exception)


def test_models_check_missing_card_is_exit_2(tmp_path):
    r = _run(models, ["check", str(tmp_path / "none.yaml")])
    assert _exit_code(r) == 2 and "model card not found" in str(r.exception)


# cxr classify (files on disk) ----------------------------------------------------------------------------------
def test_cxr_classify_files_prints_the_tool_table_and_json(tmp_path):
    from PIL import Image

    from clinseek_demo.cxr_images import render_cxr
    from pydicom.data import get_testdata_file

    png = tmp_path / "big_heart.png"
    Image.fromarray(render_cxr(frozenset({"cardiomegaly"}), np.random.default_rng(5))).save(png)
    r = _run(cxr, ["classify", "--model", "phantom", str(png), get_testdata_file("RG1_UNCR.dcm")])
    assert r.exit_code == 0, r.output
    assert f"on {png}" in r.output and "RG1_UNCR.dcm (window from the file" in r.output
    assert r.output.count("label | probability | threshold | positive") == 2
    assert "cardiomegaly | " in r.output
    r = _run(cxr, ["classify", "--model", str(PHANTOM), "--json", str(png)])
    obj = json.loads(r.output)
    assert obj["model"] == "phantom_cxr" and obj["sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()
    assert [x["label"] for x in obj["labels"]][0] == "cardiomegaly"


def test_cxr_classify_bad_file_is_reported_and_exit_2(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = _run(cxr, ["classify", "--model", "phantom", str(bad)])
    assert r.exit_code == 2
    assert "unsupported image format" in r.output


def test_builtin_models_ship_inside_the_package():
    """A wheel (not only an editable install) must carry the phantom: its folder is package data of clinseek_cxr."""
    import fnmatch
    import tomllib

    import clinseek_cxr

    root = Path(clinseek_cxr.__file__).resolve().parent
    assert models_dir().parent == root and (models_dir() / "phantom_cxr.onnx").is_file()
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    for f in models_dir().iterdir():
        assert any(fnmatch.fnmatch(f.name, p) for p in patterns), f"{f.name} is not package data"
