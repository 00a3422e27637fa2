"""Which tasks name a patient (or an admission) the database does not have.

Such a task would run with every tool answering "(no rows)" and score as if the model had failed; the engine asks
before the first episode instead (docs/recipes.md, tasks.missing_patient). The check reads the roster tables the
profile names (`roster:`), outside any episode's scope: whether an id exists is not patient data a model sees.
"""
from __future__ import annotations

from typing import Any, Iterable

CHUNK = 1000  # ids per IN list: well inside every backend's statement limits


def missing_patients(toolset: Any, tasks: Iterable[Any]) -> dict[str, str]:
    """qid -> why, for each task whose subject_id is not in the roster's patient table or whose hadm_id is not an
    admission of that patient. {} when the profile declares no roster."""
    roster = toolset.profile.roster
    tasks = list(tasks)
    if not tasks or roster.get("patients") not in toolset.scope.tables:
        return {}  # no roster declared, or the database lacks the table (the profile check warned at open)
    key = toolset.scope.tables[roster["patients"]].spec.patient_key
    known = _existing(toolset, roster["patients"], [key], {str(t.subject_id) for t in tasks})
    known_patients = {row[0] for row in known}
    owners: dict[str, str] = {}
    if roster.get("admissions") not in toolset.scope.tables:
        roster = {"patients": roster["patients"]}
    else:
        adm = roster["admissions"]
        adm_key = roster["admission_key"]
        wanted = {str(t.hadm_id) for t in tasks if t.hadm_id is not None}
        owners = {row[0]: row[1] for row in _existing(toolset, adm, [adm_key, key], wanted)}
    missing: dict[str, str] = {}
    for t in tasks:
        sid = str(t.subject_id)
        if sid not in known_patients:
            missing[t.qid] = f"patient {sid} is not in {roster['patients']}"
        elif roster.get("admissions") and t.hadm_id is not None:
            owner = owners.get(str(t.hadm_id))
            if owner is None:
                missing[t.qid] = f"admission {t.hadm_id} is not in {roster['admissions']}"
            elif owner != sid:
                missing[t.qid] = f"admission {t.hadm_id} belongs to another patient, not {sid}"
    return missing


def _existing(toolset: Any, table: str, columns: list[str], ids: set[str]) -> list[tuple[str, ...]]:
    """Rows (as text) of `table` whose first column, read as text, is one of `ids`."""
    dialect = toolset.backend.dialect
    base = toolset.backend.base_name(table).sql(dialect=dialect)
    cols = ", ".join(f"CAST({c} AS VARCHAR)" for c in columns)
    out: list[tuple[str, ...]] = []
    ordered = sorted(ids)
    for i in range(0, len(ordered), CHUNK):
        chunk = ordered[i:i + CHUNK]
        values = ", ".join("'" + v.replace("'", "''") + "'" for v in chunk)
        sql = f"SELECT DISTINCT {cols} FROM {base} WHERE CAST({columns[0]} AS VARCHAR) IN ({values})"
        res = toolset.backend.run(sql, len(chunk) * 4 + 1, max(30.0, toolset.config.sql_timeout_s),
                                  count_more=False)
        out.extend(tuple(str(v) for v in row) for row in res.rows)
    return out
