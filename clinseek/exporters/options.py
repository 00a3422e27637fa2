"""Export options: the recipe's `output.export` block and the flags of `clinseek export`."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ExportOptions(BaseModel):
    """Which formats to write and which trajectories make it into the training data.

    Defaults suit correct-only distillation from a finished run: completed episodes, deduplicated, every row
    carrying its provenance.
    """

    model_config = ConfigDict(extra="forbid")

    formats: list[str] = Field(default_factory=lambda: ["openai"],
                               description="exporter names: openai, trl, sharegpt, hf, or a plugin's")
    out: str | None = Field(None, description="output folder; default <run dir>/export")
    completed_only: bool = Field(True, description="keep only episodes that ended with finish")
    min_score: float | None = Field(None, ge=0.0, le=1.0,
                                    description="keep only episodes whose set F1 against the label is at least this")
    min_turns: int | None = Field(None, ge=0, description="keep only episodes with at least this many model turns")
    max_turns: int | None = Field(None, ge=1, description="keep only episodes with at most this many model turns")
    dedupe: bool = Field(True, description="drop trajectories identical to one already kept (ids ignored)")
    include_system: bool = Field(True, description="keep the system prompt in each row")
    drop_errors: bool = Field(False, description="drop episodes where any tool call returned an error")
    provenance: Literal["inline", "sidecar"] = Field(
        "inline", description="inline: a `provenance` key on each row; sidecar: provenance.jsonl, same line order "
                              "(for consumers that refuse unknown keys)")
    dataset_name: str = Field("clinseek_sft", description="name used in LLaMA-Factory's dataset_info.json")
    hf_repo: str | None = Field(None, description="push the `hf` dataset to this Hub repo (owner/name)")
    hf_token_env: str = Field("HF_TOKEN", description="environment variable holding the Hub token")
    hf_private: bool = Field(True, description="create the Hub repo private")

    @field_validator("formats")
    @classmethod
    def _formats_unique(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one format")
        return list(dict.fromkeys(v))
