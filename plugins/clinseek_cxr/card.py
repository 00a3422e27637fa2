"""Model cards: the YAML beside an ONNX chest X-ray classifier that says how to feed it and read it.

A card names the weights file (relative to the card), the labels in output order, the input size and channels,
the preprocessing (resize, crop, intensity scaling, default DICOM window), the output activation, per-label
operating thresholds, provenance (training data, sha256 of the weights) and the intended use and limits.
See docs/cxr.md for a full example.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clinseek.errors import UserError

CARD_SCHEMA = "clinseek.cxr.card/v1"
# Built-in model names a recipe may use instead of a card path -> card file in the package's models/ folder.
BUILTIN_MODELS = {"phantom": "phantom_cxr.yaml"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Strict):
    size: int = Field(gt=7, le=2048, description="square input side in pixels (H = W)")
    channels: Literal[1, 3] = 1
    name: str | None = Field(None, description="ONNX input name; the model's first input when omitted")


class Window(_Strict):
    center: float
    width: float = Field(gt=0)


class Preprocess(_Strict):
    resize: int | None = Field(None, gt=7, description="shorter side resized to this many pixels first")
    crop: Literal["center", "none"] = "center"
    scaling: Literal["unit", "mean_std", "xrv"] = Field(
        "unit", description="unit: [0, 1]; mean_std: (x - mean) / std on [0, 1]; xrv: [-1024, 1024] "
                            "(torchxrayvision)")
    mean: list[float] | None = None
    std: list[float] | None = None
    window: Window | None = Field(None, description="DICOM window used when the file carries none")

    @model_validator(mode="after")
    def _mean_std(self):
        if self.scaling == "mean_std":
            if not self.mean or not self.std:
                raise ValueError("scaling 'mean_std' needs both 'mean' and 'std' (one value, or one per channel)")
            if any(s <= 0 for s in self.std):
                raise ValueError("every 'std' must be > 0")
        return self


class OutputSpec(_Strict):
    activation: Literal["sigmoid", "none"] = Field(
        "sigmoid", description="sigmoid: the model outputs logits; none: it outputs probabilities already")
    name: str | None = None


class Provenance(_Strict):
    training_data: str
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    source: str | None = None
    license: str | None = None
    command: str | None = Field(None, description="how to reproduce the weights")


class Evaluation(_Strict):
    dataset: str
    n: int | None = None
    auroc: dict[str, float | None] = Field(default_factory=dict)


class ModelCard(_Strict):
    schema_: str = Field(CARD_SCHEMA, alias="schema")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    version: str = "1"
    description: str = ""
    weights: str = Field(description="the .onnx file, relative to the card")
    labels: list[str] = Field(min_length=1)
    input: InputSpec
    preprocess: Preprocess = Preprocess()
    output: OutputSpec = OutputSpec()
    thresholds: dict[str, float] = Field(default_factory=dict)
    provenance: Provenance
    evaluation: Evaluation | None = None
    intended_use: str
    limitations: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # Set by load_card: where the card lives, so weights resolve beside it.
    _path: Path | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.schema_ != CARD_SCHEMA:
            raise ValueError(f"schema must be {CARD_SCHEMA!r}, got {self.schema_!r}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        unknown = sorted(set(self.thresholds) - set(self.labels))
        if unknown:
            raise ValueError(f"thresholds for unknown label(s): {', '.join(unknown)}")
        for label, t in self.thresholds.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold for {label!r} must be within [0, 1], got {t}")
        for key in ("mean", "std"):
            values = getattr(self.preprocess, key)
            if values is not None and len(values) not in (1, self.input.channels):
                raise ValueError(f"preprocess.{key} needs 1 or {self.input.channels} values")
        if self.preprocess.resize is not None and self.preprocess.resize < self.input.size \
                and self.preprocess.crop == "center":
            raise ValueError("preprocess.resize must be >= input.size when cropping")
        return self

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def weights_path(self) -> Path:
        base = self._path.parent if self._path else Path(".")
        return (base / self.weights).resolve()

    @property
    def sha256(self) -> str:
        return self.provenance.weights_sha256

    def threshold(self, label: str) -> float:
        return self.thresholds.get(label, 0.5)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def models_dir() -> Path:
    """The built-in model artifacts, shipped inside the package (so a wheel install has them too)."""
    return Path(__file__).resolve().parent / "models"


def resolve_card_path(model: str, base_dir: Path | None = None) -> Path:
    """A recipe's `model`: a built-in name (`phantom`) or a card path relative to `base_dir` (the recipe's folder)."""
    if model in BUILTIN_MODELS:
        return models_dir() / BUILTIN_MODELS[model]
    p = Path(model).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a card; every problem becomes one UserError naming the card and the field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model card not found: {path}", hint="give the path of the card's .yaml (or 'phantom')")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"the model card is not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("a model card must be a YAML mapping", where=str(path))
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(card)"
            problems.append(f"{loc}: {err['msg']}")
        raise UserError("invalid model card:\n  " + "\n  ".join(problems), where=str(path),
                        hint="see docs/cxr.md for the card fields") from None
    card._path = path.resolve()
    return card


def verify_weights(card: ModelCard) -> str:
    """Check the weights file exists and matches the card's sha256; return the hash."""
    wp = card.weights_path
    if not wp.is_file():
        raise UserError(f"weights file not found: {wp}", where=str(card.path),
                        hint="'weights' is relative to the card's folder")
    digest = sha256_file(wp)
    if digest != card.sha256:
        raise UserError(f"weights sha256 mismatch: the card says {card.sha256}, {wp.name} is {digest}",
                        where=str(card.path), hint="the file changed since the card was written; re-export or "
                                                   "fix provenance.weights_sha256")
    return digest
