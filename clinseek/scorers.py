"""The Scorer API. The built-in ClinSeek-Bench set-F1 scoring lives in clinseek.scoring."""
from __future__ import annotations

from typing import Any, ClassVar


class Scorer:
    """Subclasses set `name` and implement `score`, returning metric name -> value for one answer."""

    name: ClassVar[str] = ""

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = options or {}

    def score(self, answer: list[str], task: Any) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError


BUILTIN_SCORERS: list[type[Scorer]] = []
