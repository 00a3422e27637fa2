"""A Hugging Face `datasets` dataset saved to disk (TRL-style rows), pushed to the Hub when a repo is given.

Tool-call arguments and tool schemas differ from row to row; stored as Arrow structs they would be merged into
one struct padded with nulls, and chat templates would then render `"query": null` into every call. They are
stored with the `Json` feature instead, so each row reads back exactly as written.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Iterable

from clinseek.errors import UserError
from clinseek.exporters.common import TrainingExporter
from clinseek.exporters.trl import TRLExporter


def hf_features() -> Any:
    from datasets import Features, Json, List

    return Features({"messages": List(Json()), "tools": List(Json()), "provenance": Json()})


class HFExporter(TrainingExporter):
    name: ClassVar[str] = "hf"
    filename: ClassVar[str] = "hf_dataset"

    def convert(self, record: dict[str, Any]) -> dict[str, Any] | None:
        return TRLExporter(self.options).convert(record)

    def write(self, records: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
        from datasets import Dataset

        rows = list(self.rows(records))
        if not rows:
            raise UserError("no trajectory passed the export filters, so there is no dataset to save",
                            hint="loosen completed_only / min_score / turn limits, or check the run's status")
        ds = Dataset.from_list(rows, features=hf_features())
        path = out_dir / self.filename
        ds.save_to_disk(str(path))
        repo = self.options.get("hf_repo")
        if repo:
            token = os.environ.get(self.options.get("hf_token_env") or "HF_TOKEN")
            if not token:
                raise UserError(f"hf_repo {repo!r} is set but ${self.options.get('hf_token_env')} holds no token",
                                hint="export a Hub token with write access, or drop hf_repo to keep the data local")
            # Explicit opt-in only: these rows hold patient data drawn from the site's EHR.
            ds.push_to_hub(repo, token=token, private=bool(self.options.get("hf_private", True)))
        return [path]


def load_hf_export(path: Path | str) -> Any:
    """Read back a dataset written by the `hf` exporter."""
    from datasets import load_from_disk

    return load_from_disk(str(path))
