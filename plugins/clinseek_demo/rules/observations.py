"""Tool observations parsed into tables: what the policies decide from."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clinseek_demo.rules.catalog import LABS
from clinseek_demo.rules.queries import ED_COLUMNS


@dataclass
class Observation:
    step: str
    tool: str
    arguments: dict[str, Any]
    text: str
    evidence_id: str | None
    is_error: bool


@dataclass
class Step:
    key: str
    tool: str
    arguments: dict[str, Any]
    why: str


@dataclass
class Decision:
    answer: list[str]
    evidence: list[str] = field(default_factory=list)
    reasoning: str = ""


# Observation parsing --------------------------------------------------------------------------------------------

EID_PREFIX = re.compile(r"^\[E\d+\]\s*")


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of the first pipe-separated table in an observation (a title line before its header is skipped);
    notes such as "(3 rows)" or "... 5 more rows" end it."""
    lines = [ln for ln in EID_PREFIX.sub("", text or "").splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if re.search(r"(?<!\\)\|", ln)), None)
    if start is None:
        return []
    split = lambda ln: [c.strip() for c in re.split(r"(?<!\\)\|", ln)]  # noqa: E731 - "\|" is an escaped pipe
    head = split(lines[start])
    rows = []
    for ln in lines[start + 1:]:
        cells = split(ln)
        if len(cells) != len(head):
            if rows:
                break
            continue
        rows.append(dict(zip(head, cells)))
    return rows


def num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def observations(messages: list[dict[str, Any]]) -> dict[str, Observation]:
    """The host's own earlier steps and their replies, by step key."""
    calls: dict[str, dict[str, Any]] = {}
    for m in messages:
        for c in m.get("tool_calls") or []:
            calls[c.get("id", "")] = c
    out = {}
    for m in messages:
        if m.get("role") != "tool":
            continue
        cid = m.get("tool_call_id") or ""
        if not cid.startswith("rules_"):
            continue
        call = calls.get(cid, {})
        step = cid[len("rules_"):]
        out[step] = Observation(step=step, tool=m.get("name") or call.get("name", ""),
                                arguments=call.get("arguments") or {}, text=m.get("content") or "",
                                evidence_id=m.get("evidence_id"), is_error=bool(m.get("is_error")))
    return out


def latest_values(obs: Observation | None, ids: dict[int, str]) -> dict[str, float]:
    vals: dict[str, float] = {}
    if obs is None or obs.is_error:
        return vals
    for row in parse_table(obs.text):
        item = num(row.get("itemid"))
        v = num(row.get("valuenum"))
        if item is None or v is None:
            continue
        name = ids.get(int(item))
        if name and name not in vals:
            vals[name] = v
    if "temp_c" not in vals and "temp_f" in vals:
        vals["temp_c"] = (vals["temp_f"] - 32) * 5 / 9
    return vals


def first_values(obs: Observation | None) -> dict[str, float]:
    vals: dict[str, float] = {}
    if obs is None or obs.is_error:
        return vals
    for row in parse_table(obs.text):
        item, v = num(row.get("itemid")), num(row.get("first_value"))
        if item is not None and v is not None and LABS.get(int(item)):
            vals[LABS[int(item)]] = v
    return vals


def ed_values(obs: Observation | None) -> dict[str, float]:
    if obs is None or obs.is_error:
        return {}
    rows = parse_table(obs.text)
    if not rows:
        return {}
    vals = {ED_COLUMNS[k]: v for k, raw in rows[0].items() if k in ED_COLUMNS and (v := num(raw)) is not None}
    if "temp_f" in vals:
        vals["temp_c"] = (vals.pop("temp_f") - 32) * 5 / 9
    return vals


def prediction_time(task: Any) -> datetime | None:
    """The task's prediction time as a datetime (a task view may carry it as ISO text)."""
    pt = getattr(task, "prediction_time", None)
    if isinstance(pt, str):
        try:
            pt = datetime.fromisoformat(pt)
        except ValueError:
            return None
    return pt if isinstance(pt, datetime) else None
