"""Paired statistics for comparing runs over the same questions: a seeded paired bootstrap and flip counts.

A difference between two runs is measured per question (mean F1 over that question's runs), then averaged the way
the score is: over questions within a task, and over tasks (macro) overall. Resampling is stratified by task, so
every bootstrap replicate keeps each task's question count and the macro structure of the score.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    diff: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(diffs_by_group: dict[str, np.ndarray], *, n_boot: int = 2000, seed: int = 0,
                     alpha: float = 0.05, macro: bool = True) -> Interval:
    """Interval for the mean difference. `diffs_by_group`: per task, the per-question differences (B - A).

    macro=True averages task means (the overall score); macro=False pools questions (one group's mean).
    """
    groups = [np.asarray(d, dtype=float) for d in diffs_by_group.values() if len(d)]
    if not groups:
        return Interval(0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    if macro:
        point = float(np.mean([g.mean() for g in groups]))
        reps = np.zeros(n_boot)
        for g in groups:
            idx = rng.integers(0, len(g), size=(n_boot, len(g)))
            reps += g[idx].mean(axis=1)
        reps /= len(groups)
    else:
        pooled = np.concatenate(groups)
        point = float(pooled.mean())
        idx = rng.integers(0, len(pooled), size=(n_boot, len(pooled)))
        reps = pooled[idx].mean(axis=1)
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return Interval(point, float(low), float(high))


def flips(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(questions right in A and wrong in B, questions wrong in A and right in B)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    return int(np.sum(a & ~b)), int(np.sum(~a & b))
