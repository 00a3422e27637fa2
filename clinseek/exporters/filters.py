"""Which trajectories become training rows, and the provenance each row carries."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any, Iterable, Iterator

from clinseek.exporters.options import ExportOptions
from clinseek.scoring import set_prf


def record_score(record: dict[str, Any]) -> float | None:
    """Set F1 of the record's answer against its task's label (None when the task has no label)."""
    task = record.get("task") or {}
    label = task.get("label") if isinstance(task, dict) else None
    if not label:
        return None
    return set_prf(record.get("answer") or [], label)[2]


def model_turns(record: dict[str, Any]) -> int:
    return sum(1 for m in record.get("messages") or [] if m.get("role") == "assistant")


def provenance(record: dict[str, Any]) -> dict[str, Any]:
    task = record.get("task") or {}
    host = record.get("host") or {}
    return {"recipe_sha256": record.get("recipe_sha256"), "host_provider": host.get("provider"),
            "host_model": host.get("model"), "qid": record.get("qid"), "run_index": record.get("run_index", 0),
            "task": task.get("task") if isinstance(task, dict) else task,
            "task_type": task.get("task_type") if isinstance(task, dict) else None,
            "status": record.get("status"), "score": record_score(record), "turns": model_turns(record)}


def trajectory_key(record: dict[str, Any]) -> str:
    """A hash of what the model saw and did; call ids and evidence bookkeeping are ignored."""
    canon = []
    for m in record.get("messages") or []:
        calls = [(c.get("name"), json.dumps(c.get("arguments"), sort_keys=True)) for c in m.get("tool_calls") or []]
        canon.append((m.get("role"), m.get("content"), calls))
    return hashlib.sha256(json.dumps(canon, sort_keys=True, default=str).encode()).hexdigest()


def filter_records(records: Iterable[dict[str, Any]], options: ExportOptions,
                   stats: Counter | None = None) -> Iterator[dict[str, Any]]:
    """Yield the records that pass the options' filters; count every drop by reason in `stats`."""
    stats = stats if stats is not None else Counter()
    seen: set[str] = set()
    for rec in records:
        stats["seen"] += 1
        if options.completed_only and rec.get("status") != "completed":
            stats["dropped_not_completed"] += 1
            continue
        if options.min_score is not None:
            score = record_score(rec)
            if score is None or score < options.min_score:
                stats["dropped_score"] += 1
                continue
        turns = model_turns(rec)
        if options.min_turns is not None and turns < options.min_turns:
            stats["dropped_turns"] += 1
            continue
        if options.max_turns is not None and turns > options.max_turns:
            stats["dropped_turns"] += 1
            continue
        if options.drop_errors and any(m.get("is_error") for m in rec.get("messages") or []
                                       if m.get("role") == "tool"):
            stats["dropped_tool_error"] += 1
            continue
        if options.dedupe:
            key = trajectory_key(rec)
            if key in seen:
                stats["dropped_duplicate"] += 1
                continue
            seen.add(key)
        stats["kept"] += 1
        yield rec


def training_messages(record: dict[str, Any], include_system: bool = True) -> list[dict[str, Any]]:
    """The canonical messages a model should learn from: provider_data dropped, and everything after the last
    assistant turn dropped (the engine's reply to `finish` is not something the model says or needs)."""
    msgs = [dict(m) for m in record.get("messages") or []]
    last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=-1)
    msgs = msgs[:last + 1]
    out = []
    for m in msgs:
        if m.get("role") == "system" and not include_system:
            continue
        m.pop("provider_data", None)
        out.append(m)
    return out
