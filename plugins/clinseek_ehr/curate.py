"""The curated evidence package: the bound patient's events in a window before the cutoff, newest first, read
through the same scoped subqueries as the tools (same patient, cutoff and masking rules)."""
from __future__ import annotations

from datetime import timedelta

from clinseek.toolsets import Binding, Episode

SKIP_SUFFIXES = ("_id",)
KEEP_IDS = ("itemid",)
MAX_VALUE_CHARS = 300

WINDOW_START = "__clinseek_window_start__"   # a per-binding literal, filled in by run_sql


def curated_events(toolset, binding: Binding, window_hours: float = 24, max_events: int = 100) -> str:
    """Events of `binding`'s patient within `window_hours` before its prediction time, at most `max_events`,
    newest first, as compact text, read through an opened EhrToolset (`EhrToolset.curate`)."""
    return _curate(toolset, binding, window_hours, max_events)


def _curate(toolset, binding: Binding, window_hours: float, max_events: int) -> str:
    from clinseek_ehr.render import fmt

    episode = Episode(binding=binding, task=None)
    toolset.bind(episode)
    try:
        cutoff = toolset.episode_scope(episode).cutoff
        start = cutoff - timedelta(hours=window_hours)
        events: list[tuple] = []
        for name in toolset.patient_tables:
            ts = toolset.scope.tables[name]
            if not ts.time_sql:
                continue
            tm = f"CAST({ts.time_sql} AS TIMESTAMP)"
            sql = (f"SELECT {tm} AS __t, * FROM {name} WHERE {tm} >= CAST('{WINDOW_START}' AS TIMESTAMP) "
                   "ORDER BY __t DESC")
            res = toolset.run_sql(episode, sql, max_rows=max_events, trusted=True, count_more=False,
                                  literals={WINDOW_START: start.isoformat(sep=" ")})
            for row in res.rows:
                events.append((row[0], name, dict(zip(res.columns[1:], row[1:]))))
        events.sort(key=lambda e: (e[0], e[1]), reverse=True)
        shown = events[:max_events]
        labels = _labels(toolset, episode, shown)
        head = (f"Events in the {window_hours:g} h before {cutoff:%Y-%m-%d %H:%M} (newest first; "
                f"{len(shown)} shown{'' if len(events) <= max_events else f', more not shown'}):")
        lines = [head]
        for when, name, row in shown:
            spec = toolset.scope.tables[name].spec
            parts = []
            for col, value in row.items():
                if value is None or col == spec.patient_key or col == "__t" or value == when or col == "storetime":
                    continue
                if col.endswith(SKIP_SUFFIXES) and col not in KEEP_IDS:
                    continue
                if col == "itemid" and value in labels:
                    parts.append(labels[value])
                    continue
                parts.append(f"{col}={fmt(value, MAX_VALUE_CHARS)}")
            lines.append(f"{fmt(when)} {name}: " + "; ".join(parts))
        if not shown:
            lines.append("(no events in this window)")
        return "\n".join(lines)
    finally:
        toolset.unbind(episode)


def _labels(toolset, episode, events) -> dict:
    """itemid -> label from the dictionaries that are keyed by itemid (lab and ICU items do not overlap)."""
    ids = sorted({row["itemid"] for _, _, row in events if row.get("itemid") is not None})
    if not ids:
        return {}
    out: dict = {}
    id_list = ", ".join(str(int(i)) for i in ids)
    for name in toolset.dictionaries:
        ts = toolset.scope.tables[name]
        if "itemid" in ts.spec.code_columns and ts.spec.label_columns and ts.spec.label_columns[0] in ts.columns:
            res = toolset.run_sql(episode, f"SELECT itemid, {ts.spec.label_columns[0]} FROM {name} "
                                           f"WHERE itemid IN ({id_list})", max_rows=len(ids), trusted=True,
                                  count_more=False)
            for code, label in res.rows:
                out.setdefault(code, str(label))
    return out
