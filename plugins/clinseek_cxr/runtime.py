"""ONNX Runtime sessions for model cards: provider choice, shape checks, batched prediction.

Provider choice: `auto` asks for CUDA then CPU when the installed onnxruntime offers CUDA (the `gpu` extra), CPU
otherwise; `cuda` insists on CUDA; `cpu` never uses it. What a session really uses can differ from what was asked
(onnxruntime falls back to CPU when the CUDA libraries fail to load), so `CxrModel.providers` reads it back from
the session, and that is what the run manifest records.
"""
from __future__ import annotations

import threading
from typing import Literal

import numpy as np

from clinseek.errors import UserError

from .card import ModelCard, verify_weights
from .images import preprocess

ProviderChoice = Literal["auto", "cpu", "cuda"]
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def choose_providers(choice: str, available: list[str]) -> list[str]:
    """The providers to request, in order, for a choice given what onnxruntime says is available."""
    if choice == "cpu":
        return [CPU]
    if choice == "cuda":
        if CUDA not in available:
            raise UserError("providers: cuda was asked for, but this onnxruntime offers no CUDAExecutionProvider "
                            f"(available: {', '.join(available) or 'none'})",
                            hint="install the gpu extra (onnxruntime-gpu) on a machine with CUDA, or use "
                                 "providers: auto")
        return [CUDA, CPU]
    if choice == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    raise UserError(f"providers must be auto, cpu or cuda, got {choice!r}")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


class CxrModel:
    """One card's ONNX session. `predict` is thread-safe (onnxruntime sessions accept concurrent runs)."""

    def __init__(self, card: ModelCard, providers: str = "auto", threads: int | None = None,
                 check_hash: bool = True):
        import onnxruntime as ort

        self.card = card
        self.sha256 = verify_weights(card) if check_hash else card.sha256
        requested = choose_providers(providers, available_providers())
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # warnings about provider fallback are read back below instead
        try:
            self.session = ort.InferenceSession(str(card.weights_path), sess_options=opts, providers=requested)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for bad files
            raise UserError(f"cannot load {card.weights_path.name} with onnxruntime: {exc}",
                            where=str(card.path)) from None
        self.providers = list(self.session.get_providers())
        if providers == "cuda" and CUDA not in self.providers:
            raise UserError("providers: cuda was asked for, but onnxruntime fell back to "
                            f"{', '.join(self.providers)} (CUDA libraries missing or no GPU visible)")
        self.input_name, self.output_name = self._check_io()
        self.lock = threading.Lock()
        self.calls = 0
        self.images = 0

    def _check_io(self) -> tuple[str, str]:
        card = self.card
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        inp = next((i for i in inputs if i.name == card.input.name), None) if card.input.name else inputs[0]
        if inp is None:
            raise UserError(f"the model has no input named {card.input.name!r} (it has "
                            f"{', '.join(i.name for i in inputs)})", where=str(card.path))
        out = next((o for o in outputs if o.name == card.output.name), None) if card.output.name else outputs[0]
        if out is None:
            raise UserError(f"the model has no output named {card.output.name!r} (it has "
                            f"{', '.join(o.name for o in outputs)})", where=str(card.path))
        want = [None, card.input.channels, card.input.size, card.input.size]
        shape = list(inp.shape)
        if len(shape) != 4 or any(isinstance(d, int) and w is not None and d != w for d, w in zip(shape, want)):
            raise UserError(f"input {inp.name!r} has shape {shape}; the card says [N, {card.input.channels}, "
                            f"{card.input.size}, {card.input.size}]", where=str(card.path))
        oshape = list(out.shape)
        if len(oshape) != 2 or (isinstance(oshape[1], int) and oshape[1] != len(card.labels)):
            raise UserError(f"output {out.name!r} has shape {oshape}; the card lists {len(card.labels)} labels, "
                            f"so it should be [N, {len(card.labels)}]", where=str(card.path))
        return inp.name, out.name

    @property
    def batch_fixed(self) -> int | None:
        """The input's batch size when the model fixes it (then batches are run one fixed-size chunk at a time)."""
        d = self.session.get_inputs()[0].shape[0]
        return d if isinstance(d, int) else None

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        return preprocess(pixels, self.card)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) preprocessed -> (N, labels) probabilities."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        fixed = self.batch_fixed
        if fixed and batch.shape[0] != fixed:
            return np.concatenate([self.predict(batch[i:i + 1]) for i in range(batch.shape[0])]) \
                if fixed == 1 else self._predict_padded(batch, fixed)
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        with self.lock:
            self.calls += 1
            self.images += batch.shape[0]
        out = np.asarray(out, dtype=np.float64)
        if self.card.output.activation == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-out))
        return out

    def _predict_padded(self, batch: np.ndarray, fixed: int) -> np.ndarray:
        parts = []
        for i in range(0, batch.shape[0], fixed):
            chunk = batch[i:i + fixed]
            n = chunk.shape[0]
            if n < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), np.float32)])
            parts.append(self.predict(chunk)[:n])
        return np.concatenate(parts)

    def describe(self) -> dict:
        import onnxruntime as ort

        return {"model": self.card.name, "version": self.card.version, "sha256": self.sha256,
                "card": str(self.card.path) if self.card.path else None, "providers": self.providers,
                "onnxruntime": ort.__version__, "labels": list(self.card.labels)}


def dry_run(model: CxrModel, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Run a small random batch through the model; check outputs are finite probabilities of the right shape."""
    card = model.card
    rng = np.random.default_rng(seed)
    pixels = [rng.uniform(0, 1, size=(card.input.size + 16, card.input.size + 16)).astype(np.float32)
              for _ in range(batch)]
    x = np.stack([model.prepare(p) for p in pixels])
    try:
        probs = model.predict(x)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"dry run failed: {exc}", where=str(card.path)) from None
    if probs.shape != (batch, len(card.labels)):
        raise UserError(f"dry run gave output shape {probs.shape}, expected {(batch, len(card.labels))}",
                        where=str(card.path))
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        hint = "set output.activation: sigmoid if the model outputs logits" \
            if card.output.activation == "none" else None
        raise UserError("dry run gave values outside [0, 1] after the card's activation", where=str(card.path),
                        hint=hint)
    return probs
