"""Map free text onto the bound task's candidate answers: by keyword, fuzzy string similarity, or meaning.

Decision-making tasks ask for items from a long candidate vocabulary; a model that found "acute kidney failure"
in a note must answer with the candidate's exact spelling. Only the task's `candidates` are searched (public, like
the question; never the label). Deterministic: ties keep the candidates' own order.
"""
from __future__ import annotations

import difflib
import re
from typing import Iterable

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(str(text).lower())


def keyword_scores(query: str, candidates: Iterable[str]) -> list[tuple[str, float]]:
    """Share of the query's words that occur in the candidate (as words or word prefixes); 0 when none."""
    q = set(_words(query))
    out = []
    for c in candidates:
        words = _words(c)
        hit = sum(1 for w in q if any(cw == w or cw.startswith(w) for cw in words))
        out.append((c, hit / len(q) if q else 0.0))
    return out


def fuzzy_scores(query: str, candidates: Iterable[str]) -> list[tuple[str, float]]:
    """The better of whole-string similarity and sorted-word similarity (so word order and typos cost little)."""
    q = " ".join(_words(query))
    qs = " ".join(sorted(_words(query)))
    out = []
    for c in candidates:
        cw = " ".join(_words(c))
        cs = " ".join(sorted(_words(c)))
        out.append((c, max(difflib.SequenceMatcher(None, q, cw).ratio(),
                           difflib.SequenceMatcher(None, qs, cs).ratio())))
    return out


def rank(query: str, candidates: list[str], mode: str, limit: int) -> list[tuple[int, str, float]]:
    scores = keyword_scores(query, candidates) if mode == "keyword" else fuzzy_scores(query, candidates)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i][1], i))
    return [(n + 1, scores[i][0], round(scores[i][1], 3)) for n, i in enumerate(order[:limit]) if scores[i][1] > 0]


def rank_semantic(embedder, query: str, candidates: list[str], limit: int,
                  cache: dict) -> list[tuple[int, str, float]]:
    """Cosine similarity between the query's and each candidate's embedding (rows are L2-normalised); the
    candidates' vectors are computed once per candidate list and kept in `cache`."""
    import numpy as np

    key = tuple(candidates)
    if key not in cache:
        cache[key] = np.asarray(embedder.embed(list(candidates)), dtype=np.float32)
    q = np.asarray(embedder.embed([query]), dtype=np.float32)[0]
    sims = cache[key] @ q
    order = sorted(range(len(candidates)), key=lambda i: (-round(float(sims[i]), 6), i))
    return [(n + 1, candidates[i], round(float(sims[i]), 3)) for n, i in enumerate(order[:limit])]

