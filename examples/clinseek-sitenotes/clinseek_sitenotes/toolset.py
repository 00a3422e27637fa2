"""The `sitenotes` toolset: a site's bedside notes, only the bound patient's, only up to the prediction time."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from clinseek import Episode, ToolError, Toolset, ToolsetConfig, tool


class SiteNotesConfig(ToolsetConfig):
    path: str
    max_notes: int = 5


class SiteNotes(Toolset):
    name = "sitenotes"
    description = "Bedside notes kept by the site"
    Config = SiteNotesConfig
    patient_data = True  # governance: these observations carry patient data

    def open(self) -> None:
        path = Path(self.config.path)
        if not path.is_absolute() and self.context is not None:
            path = self.context.recipe_dir / path
        self.notes = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def bind(self, episode: Episode) -> None:
        b = episode.binding
        # The engine's binding decides what this episode may see; no tool argument can change it.
        episode.state["notes"] = sorted(
            (n for n in self.notes if str(n["subject_id"]) == str(b.subject_id)
             and datetime.fromisoformat(n["charttime"]) <= b.prediction_time),
            key=lambda n: n["charttime"], reverse=True)

    @tool
    def sitenotes_search(self, episode: Episode, keyword: str) -> str:
        """Search this patient's bedside notes written by the prediction time (literal, case-insensitive).

        Args:
            keyword: a word or phrase to look for.
        """
        if not keyword.strip():
            raise ToolError("keyword is empty; give a word such as 'confused' or 'fever'")
        hits = [n for n in episode.state["notes"] if keyword.lower() in n["text"].lower()]
        shown = hits[: self.config.max_notes]
        lines = [f"{n['charttime']} | {n['text']}" for n in shown]
        if len(hits) > len(shown):
            lines.append(f"... {len(hits) - len(shown)} more notes not shown")
        return "\n".join(lines) if lines else f"no note mentions {keyword!r}"
