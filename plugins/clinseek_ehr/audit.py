"""The leak audit: for each task, enumerate everything the ehr tools can show that episode and count violations.

All seven tools read patient data only through the episode's scoped subqueries (toolset.run_sql -> guard.compose),
so the audit reads each patient table through that same path (`SELECT * FROM <table>`) and checks every row:

- other patients: the patient key differs from the bound patient;
- future rows: any time or date value after the cutoff (a check that needs no profile), or the row's own known_at
  rules say it was not yet known (re-evaluated on the raw table, matched by the row's unmasked values);
- unmasked future values: a masked column holds a value although its rule says it was not yet known.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Iterable

from clinseek.toolsets import Binding, Episode

ALL_ROWS = 10_000_000


@dataclass
class TableCounts:
    rows: int = 0
    future_rows: int = 0
    unmasked: int = 0
    other_patients: int = 0

    @property
    def violations(self) -> int:
        return self.future_rows + self.unmasked + self.other_patients


@dataclass
class AuditReport:
    tasks: int = 0
    tables: dict[str, TableCounts] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(t.violations for t in self.tables.values())

    def render(self) -> str:
        lines = ["table|rows seen|future rows|unmasked future values|other patients' rows"]
        total = TableCounts()
        for name, c in sorted(self.tables.items()):
            lines.append(f"{name}|{c.rows}|{c.future_rows}|{c.unmasked}|{c.other_patients}")
            total.rows += c.rows
            total.future_rows += c.future_rows
            total.unmasked += c.unmasked
            total.other_patients += c.other_patients
        lines.append(f"total|{total.rows}|{total.future_rows}|{total.unmasked}|{total.other_patients}")
        if self.violations:
            lines.append(f"{self.violations} violation(s) in {self.tasks} task(s); first ones:")
            lines += [f"  {e}" for e in self.examples]
        else:
            lines.append(f"0 violations in {self.tasks} task(s)")
        return "\n".join(lines)


def _after(value, cutoff: datetime, strict: bool) -> bool:
    if isinstance(value, datetime):
        v = value.replace(tzinfo=None) if value.tzinfo else value
        return v >= cutoff if strict else v > cutoff
    if isinstance(value, date):
        return value > cutoff.date()
    return False


def audit_binding(toolset, binding: Binding, report: AuditReport, max_examples: int = 20) -> None:
    """Audit one episode (patient + cutoff) and add its counts to `report`."""
    episode = Episode(binding=binding, task=None)
    toolset.bind(episode)
    cutoff = toolset.episode_scope(episode).cutoff
    strict = toolset.scope.strict
    try:
        for name in toolset.patient_tables:
            ts = toolset.scope.tables[name]
            counts = report.tables.setdefault(name, TableCounts())
            seen = toolset.run_sql(episode, f"SELECT * FROM {name}", max_rows=ALL_ROWS, trusted=True,
                                   count_more=False)
            raw = toolset.backend.run(toolset.scope.audit_sql(name, binding.subject_id, cutoff), ALL_ROWS,
                                      max(60.0, toolset.config.sql_timeout_s), count_more=False)
            cols = list(seen.columns)
            key_cols = [i for i, c in enumerate(cols) if c not in ts.spec.masked]
            n_known = len(ts.spec.known_at)
            rcols = list(raw.columns)
            masks = {c: rcols.index(f"__mask_{c}") for c in ts.spec.masked if f"__mask_{c}" in rcols}
            by_key: dict[tuple, list[tuple]] = {}
            for r in raw.rows:
                by_key.setdefault(tuple(r[i] for i in key_cols), []).append(r)
            pk = cols.index(ts.spec.patient_key) if ts.spec.patient_key in cols else None

            def example(kind: str, row) -> None:
                if len(report.examples) < max_examples:
                    report.examples.append(f"{binding.qid}: {name}: {kind}: {dict(zip(cols, row))}"[:300])

            for row in seen.rows:
                counts.rows += 1
                if pk is not None and str(row[pk]) != str(binding.subject_id):
                    counts.other_patients += 1
                    example("other patient", row)
                    continue
                candidates = by_key.get(tuple(row[i] for i in key_cols), [])
                known = [c for c in candidates if all(c[len(cols) + k] is True for k in range(n_known))]
                if any(_after(v, cutoff, strict) for v in row) or not known:
                    counts.future_rows += 1
                    example("row after the cutoff", row)
                    continue
                for col, idx in masks.items():
                    value = row[cols.index(col)]
                    if value is not None and not any(c[idx] is True for c in known):
                        counts.unmasked += 1
                        example(f"unmasked {col}", row)
                        break
    finally:
        toolset.unbind(episode)


def audit_tasks(toolset, tasks: Iterable, workers: int = 1) -> AuditReport:
    """Audit every task; with workers > 1 tasks run in threads (the databases release the GIL while querying)."""
    tasks = list(tasks)
    if workers <= 1:
        report = AuditReport()
        for task in tasks:
            audit_binding(toolset, Binding.from_task(task), report)
            report.tasks += 1
        return report
    from concurrent.futures import ThreadPoolExecutor

    def one(task) -> AuditReport:
        part = AuditReport()
        audit_binding(toolset, Binding.from_task(task), part)
        part.tasks = 1
        return part

    report = AuditReport()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(one, tasks):   # in task order, so the examples are deterministic
            report.tasks += part.tasks
            for name, c in part.tables.items():
                total = report.tables.setdefault(name, TableCounts())
                total.rows += c.rows
                total.future_rows += c.future_rows
                total.unmasked += c.unmasked
                total.other_patients += c.other_patients
            report.examples += part.examples[: max(0, 20 - len(report.examples))]
    return report


def summary_counts(report: AuditReport) -> Counter:
    c: Counter = Counter()
    for t in report.tables.values():
        c["future_rows"] += t.future_rows
        c["unmasked"] += t.unmasked
        c["other_patients"] += t.other_patients
    return c
