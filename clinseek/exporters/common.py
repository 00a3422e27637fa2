"""Shared behaviour of the built-in training-data exporters: rows carry provenance, inline or in a sidecar."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from clinseek.exporters.base import Exporter
from clinseek.exporters.filters import provenance, training_messages


class TrainingExporter(Exporter):
    """convert() builds the row from `messages(record)`; write() adds provenance the way the options ask."""

    def messages(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        return training_messages(record, include_system=self.options.get("include_system", True))

    def convert_with_provenance(self, record: dict[str, Any]) -> dict[str, Any] | None:
        row = self.convert(record)
        if row is not None:
            row["provenance"] = provenance(record)
        return row

    def rows(self, records: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        for record in records:
            row = self.convert_with_provenance(record)
            if row is not None:
                yield row

    def write(self, records: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / self.filename
        sidecar = self.options.get("provenance") == "sidecar"
        written = [path]
        side_fh = (out_dir / "provenance.jsonl").open("w", encoding="utf-8") if sidecar else None
        try:
            with path.open("w", encoding="utf-8") as fh:
                for row in self.rows(records):
                    if side_fh is not None:
                        side_fh.write(json.dumps(row.pop("provenance"), ensure_ascii=False) + "\n")
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        finally:
            if side_fh is not None:
                side_fh.close()
                written.append(out_dir / "provenance.jsonl")
        return written
