"""Picking an answer among a task's candidates."""
from __future__ import annotations

import re


def norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", str(s).lower()).strip()


def pick(candidates: list[str], *words: str) -> str | None:
    for cand in candidates:
        n = norm(cand)
        if any(norm(w) in n for w in words):
            return cand
    return None


def yes_no(candidates: list[str], yes: bool) -> str:
    want = "yes" if yes else "no"
    for c in candidates:
        if norm(c) == want:
            return c
    return want
