"""Read a GGUF file's header (magic, version, metadata) without the llama.cpp runtime.

Enough to tell a GGUF file from anything else, name its architecture, context length, layer count and chat
template, and estimate the memory a context needs, before any model loads. Tensor data is never read.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
# GGUF metadata value types (gguf.md in the llama.cpp repository).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays longer than this (the tokenizer's vocabulary) are skipped, not kept: only their length is recorded.
_KEEP_ARRAY = 64


class NotGGUF(ValueError):
    """The file is not a readable GGUF file."""


@dataclass
class GGUFInfo:
    path: Path
    version: int
    tensor_count: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def arch_value(self, key: str) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def context_length(self) -> int | None:
        return self.arch_value("context_length")

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def kv_bytes_per_token(self) -> int | None:
        """Bytes of f16 K and V cache one context token takes (all layers), from the attention shape."""
        layers, embd = self.arch_value("block_count"), self.arch_value("embedding_length")
        heads, kv_heads = self.arch_value("attention.head_count"), self.arch_value("attention.head_count_kv")
        if not (layers and embd and heads):
            return None
        head_dim = embd // heads
        return 2 * 2 * layers * (kv_heads or heads) * head_dim  # K and V, 2 bytes each


def read_gguf(path: str | Path) -> GGUFInfo:
    """The header of a GGUF file; NotGGUF says why a file is not one."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _read(fh, path)
    except (struct.error, UnicodeDecodeError, MemoryError) as exc:
        raise NotGGUF(f"{path} has a GGUF magic but its header is damaged ({exc})") from exc


def _read(fh: BinaryIO, path: Path) -> GGUFInfo:
    magic = fh.read(4)
    if magic != MAGIC:
        raise NotGGUF(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    (version,) = struct.unpack("<I", fh.read(4))
    if version not in (2, 3):
        raise NotGGUF(f"{path} is GGUF version {version}; llama.cpp reads versions 2 and 3")
    tensors, kv_count = struct.unpack("<QQ", fh.read(16))
    if kv_count > 100_000:
        raise NotGGUF(f"{path}: a header that claims {kv_count} metadata entries is damaged")
    info = GGUFInfo(path=path, version=version, tensor_count=tensors)
    for _ in range(kv_count):
        key = _string(fh)
        (kind,) = struct.unpack("<I", fh.read(4))
        info.metadata[key] = _value(fh, kind)
    return info


def _string(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", fh.read(8))
    if n > 1 << 26:
        raise NotGGUF(f"a metadata string of {n} bytes is not plausible")
    raw = fh.read(n)
    if len(raw) != n:
        raise struct.error("file ends inside a string")
    return raw.decode("utf-8")


def _value(fh: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        raw = fh.read(struct.calcsize(fmt))
        return struct.unpack(fmt, raw)[0]
    if kind == _STRING:
        return _string(fh)
    if kind == _ARRAY:
        (item_kind,) = struct.unpack("<I", fh.read(4))
        (n,) = struct.unpack("<Q", fh.read(8))
        if item_kind in _SCALARS and n > _KEEP_ARRAY:
            fh.seek(n * struct.calcsize(_SCALARS[item_kind]), 1)
            return {"array_length": n}
        items = [_value(fh, item_kind) for _ in range(n)]
        return items if n <= _KEEP_ARRAY else {"array_length": n}
    raise struct.error(f"unknown metadata type {kind}")
