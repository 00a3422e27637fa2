"""The `kb` toolset's configuration (`tools: - use: kb, with: {...}`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from clinseek.toolsets import ToolsetConfig
from clinseek_kb.builtin_sources import BUILTIN_COLLECTIONS
from clinseek_kb.chunking import DEFAULT_MAX_CHARS


class EmbedderConfig(ToolsetConfig):
    """A dense embedder: `model` is a model directory, a cached Hugging Face repo id, or all-MiniLM-L6-v2."""

    model: str
    max_length: int = Field(256, ge=8, le=8192)
    batch_size: int = Field(32, ge=1, le=1024)
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads (default: all cores)")


class KbConfig(ToolsetConfig):
    """Where the knowledge base lives, what the agent may search, and how."""

    path: str | None = Field(None, description="local Qdrant directory; default <cache_dir>/kb")
    url: str | None = Field(None, description="Qdrant server URL (instead of path)")
    api_key: SecretStr | None = Field(None, description="Qdrant server API key; put it in the site file")
    site_local: bool | None = Field(
        None, description="declare the url's server inside the site (true) or outside (false); default: from "
                          "its address, as for hosts. Queries carry patient context, so governance needs it inside")
    collections: list[str] = Field(default_factory=lambda: list(BUILTIN_COLLECTIONS))
    embedder: EmbedderConfig | None = None
    retrieval: Literal["auto", "sparse", "dense", "hybrid"] = Field(
        "auto", description="auto = hybrid when an embedder is set, else sparse")
    limit: int = Field(5, ge=1, le=50, description="passages per search unless the model asks for fewer")
    max_chars: int = Field(4000, ge=200, le=50_000, description="bound on one observation's characters")
    passage_chars: int = Field(600, ge=50, le=10_000, description="bound on each passage's text in a result")
    chunk_chars: int = Field(DEFAULT_MAX_CHARS, ge=200, le=20_000, description="chunk size when building")
    icd10cm_chapters: list[str] | None = Field(
        None, description="build only these ICD-10-CM chapters (1-22) into icd10cm; default all")
    build_missing: bool = Field(True, description="open() builds missing built-in collections")
    refuse_patient_identifiers: bool = Field(True, description="refuse queries naming the bound patient's ids")

    @field_validator("embedder", mode="before")
    @classmethod
    def _embedder_shorthand(cls, v: Any) -> Any:
        return {"model": v} if isinstance(v, str) else v

    @field_validator("icd10cm_chapters", mode="before")
    @classmethod
    def _chapters_as_str(cls, v: Any) -> Any:
        return [str(c) for c in v] if isinstance(v, list) else v

    @field_validator("collections")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        import re

        bad = [n for n in v if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n)]
        if bad:
            raise ValueError(f"collection names must match [A-Za-z0-9_-]{{1,64}}: {', '.join(bad)}")
        if not v:
            raise ValueError("name at least one collection")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _one_location(self) -> "KbConfig":
        if self.path and self.url:
            raise ValueError("give either path (local Qdrant) or url (Qdrant server), not both")
        if self.api_key and not self.url:
            raise ValueError("api_key only applies to a Qdrant server (url)")
        if self.site_local is not None and not self.url:
            raise ValueError("site_local only applies to a Qdrant server (url)")
        return self

    def mode(self) -> str:
        if self.retrieval == "auto":
            return "hybrid" if self.embedder else "sparse"
        return self.retrieval

    def local_path(self, context: Any = None) -> Path | None:
        """The local Qdrant directory, or None for a server."""
        if self.url:
            return None
        if self.path:
            p = Path(self.path).expanduser()
            base = getattr(context, "recipe_dir", None)
            return (Path(base) / p if base and not p.is_absolute() else p).resolve()
        cache = getattr(context, "cache_dir", None)
        if cache is None:
            from clinseek.errors import UserError

            raise UserError("the kb toolset needs `path` (a local Qdrant directory) or `url` here",
                            hint="add `path: kb` under the kb tool's `with:` block")
        return (Path(cache) / "kb").resolve()
