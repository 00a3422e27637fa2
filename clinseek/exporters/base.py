"""The Exporter API: canonical trajectory records in, a training-data format out."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterable


class Exporter:
    """Subclasses set `name` and implement `convert` (one record -> one row, or None to drop it).

    A record is one line of a run's trajectories.jsonl (see docs/runs.md): messages, tools, evidence, task,
    answer, status, score and provenance. `write` writes rows as JSON lines; override it for other layouts.
    """

    name: ClassVar[str] = ""
    filename: ClassVar[str] = "train.jsonl"

    def __init__(self, config: Any = None, context: Any = None):
        # config: the recipe's output.export (ExportOptions) or a plain mapping; self.options is it as a mapping.
        self.config = config
        self.context = context
        self.options: dict[str, Any] = config.model_dump() if hasattr(config, "model_dump") else dict(config or {})

    def convert(self, record: dict[str, Any]) -> dict[str, Any] | None:  # pragma: no cover - interface
        raise NotImplementedError

    def write(self, records: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
        import json

        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / self.filename
        with path.open("w", encoding="utf-8") as fh:
            for record in records:
                row = self.convert(record)
                if row is not None:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return [path]
