"""The Scorer API. The built-in ClinSeek-Bench set-F1 scoring lives in clinseek.scoring."""
from __future__ import annotations

from typing import Any, ClassVar


class Scorer:
    """Subclasses set `name` and implement `score`, returning metric name -> value for one answer."""

    name: ClassVar[str] = ""

    def __init__(self, config: Any = None, context: Any = None):
        # Like every extension class: (config, context). Scorers named in a recipe get no options yet.
        self.config = config
        self.context = context
        self.options: dict[str, Any] = config.model_dump() if hasattr(config, "model_dump") else dict(config or {})

    def score(self, answer: list[str], task: Any) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError


class SetF1Scorer(Scorer):
    """ClinSeek-Bench's metric: set precision / recall / F1 and exact match after normalising both sides."""

    name: ClassVar[str] = "set_f1"

    def score(self, answer: list[str], task: Any) -> dict[str, float]:
        from clinseek.scoring import score_one

        label = task.get("label") if isinstance(task, dict) else getattr(task, "label", [])
        candidates = task.get("candidates") if isinstance(task, dict) else getattr(task, "candidates", [])
        return score_one({"answer": answer, "label": label or [], "candidates": candidates or []})


BUILTIN_SCORERS: list[type[Scorer]] = [SetF1Scorer]
