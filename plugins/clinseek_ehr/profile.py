"""Schema profiles: which tables an episode may see, and from when each row and column is known.

A profile is data (YAML). Per table it declares the patient key, `known_at` (one or more SQL expressions; a row is
visible only when every one is non-null and <= the cutoff), `masked` (column -> expression saying when that
column's value becomes known; before then it reads NULL), `time` (the expression used to order rows and place them
on the timeline), and `columns` (the visible columns, each with a one-line description; database columns the
profile does not list are hidden, with a warning unless listed under `hidden`). `dictionaries` are visible whole (no patient data). Expressions are written in
the profile's `dialect` (DuckDB by default); they see the table's own columns unqualified and other base tables as
`src.<table>`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clinseek.errors import UserError

PROFILE_DIR = Path(__file__).parent / "profiles"
BUILTIN_PROFILES = ("mimic_iv", "omop_cdm")


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    patient_key: str | None               # None for dictionaries
    known_at: tuple[str, ...] = ()        # empty: static rows (visible whole for the patient)
    masked: dict[str, str] = field(default_factory=dict)
    time: str | None = None               # ordering / timeline expression
    columns: dict[str, str] = field(default_factory=dict)   # visible column -> description
    code_columns: tuple[str, ...] = ()    # dictionaries: looked up by exact code
    label_columns: tuple[str, ...] = ()   # dictionaries: looked up by words
    hidden: tuple[str, ...] = ()          # database columns deliberately hidden (no warning about them)
    note: str = ""

    @property
    def is_dictionary(self) -> bool:
        return self.patient_key is None


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    dialect: str
    tables: dict[str, TableSpec]
    join_hints: tuple[str, ...] = ()
    source: str = ""
    # Where every patient and admission of the database is listed (`roster:` in the YAML): how a task naming a
    # patient the database lacks is found before it runs. {"patients": table, "admissions": table,
    # "admission_key": column}; empty when the profile does not say.
    roster: dict[str, str] = field(default_factory=dict)

    @property
    def patient_tables(self) -> list[str]:
        return [n for n, t in self.tables.items() if not t.is_dictionary]

    @property
    def dictionaries(self) -> list[str]:
        return [n for n, t in self.tables.items() if t.is_dictionary]


def load_profile(name_or_path: str | Path, base_dir: Path | None = None) -> Profile:
    """Load a built-in profile by name (`mimic_iv`, `omop_cdm`) or a profile file (relative to base_dir)."""
    text_name = str(name_or_path)
    if text_name in BUILTIN_PROFILES:
        path = PROFILE_DIR / f"{text_name}.yaml"
    else:
        path = Path(text_name).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.exists():
            raise UserError(f"ehr profile {text_name!r} not found", where="tools.ehr.with.profile",
                            hint=f"use one of {', '.join(BUILTIN_PROFILES)} or a path to a profile YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"profile is not valid YAML: {exc}", where=str(path)) from None
    return parse_profile(data, source=str(path))


def parse_profile(data: Any, source: str = "<profile>") -> Profile:
    if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
        raise UserError("a profile must be a mapping with a `tables` mapping", where=source)
    default_key = data.get("patient_key")
    tables: dict[str, TableSpec] = {}
    for raw_name, spec in data["tables"].items():
        tables[str(raw_name).lower()] = _table(str(raw_name).lower(), spec or {}, default_key, source, False)
    for raw_name, spec in (data.get("dictionaries") or {}).items():
        name = str(raw_name).lower()
        if name in tables:
            raise UserError(f"{name!r} is declared both as a table and a dictionary", where=source)
        tables[name] = _table(name, spec or {}, None, source, True)
    return Profile(name=str(data.get("name", Path(source).stem)), description=str(data.get("description", "")),
                   dialect=str(data.get("dialect", "duckdb")), tables=tables,
                   join_hints=tuple(str(h) for h in data.get("join_hints") or ()), source=source,
                   roster=_roster(data.get("roster"), tables, source))


def _roster(spec: Any, tables: dict[str, TableSpec], source: str) -> dict[str, str]:
    if spec is None:
        return {}
    where = f"{source}: roster"
    if not isinstance(spec, dict) or set(spec) - {"patients", "admissions", "admission_key"}:
        raise UserError("roster is a mapping of patients, admissions and admission_key", where=where)
    out = {str(k): str(v).lower() for k, v in spec.items()}
    for key in ("patients", "admissions"):
        name = out.get(key)
        if name is not None and (name not in tables or tables[name].is_dictionary):
            raise UserError(f"roster.{key}: {name!r} is not a patient table of the profile", where=where)
    if "admissions" in out and out.get("admission_key") not in tables[out["admissions"]].columns:
        raise UserError("roster.admission_key must be a column of roster.admissions", where=where)
    return out


_TABLE_KEYS = {"description", "patient_key", "known_at", "masked", "time", "columns", "code", "label", "note",
               "hidden"}


def _table(name: str, spec: dict, default_key: str | None, source: str, dictionary: bool) -> TableSpec:
    where = f"{source}: tables.{name}"
    if not isinstance(spec, dict):
        raise UserError("a table entry must be a mapping", where=where)
    unknown = set(spec) - _TABLE_KEYS
    if unknown:
        raise UserError(f"unknown key(s) {', '.join(sorted(unknown))}", where=where,
                        hint=f"allowed: {', '.join(sorted(_TABLE_KEYS))}")
    columns = spec.get("columns") or {}
    if isinstance(columns, list):
        columns = {str(c): "" for c in columns}
    columns = {str(k).lower(): str(v or "") for k, v in columns.items()}
    if not columns:
        raise UserError("a table must list its visible `columns`", where=where)
    known = spec.get("known_at") or []
    if isinstance(known, str):
        known = [known]
    masked = {str(k).lower(): str(v) for k, v in (spec.get("masked") or {}).items()}
    patient_key = None if dictionary else str(spec.get("patient_key", default_key) or "").lower() or None
    if not dictionary and patient_key is None:
        raise UserError("a patient table needs a `patient_key`", where=where)
    if not dictionary and patient_key not in columns:
        raise UserError(f"patient_key {patient_key!r} must be one of the listed columns", where=where)
    if dictionary and (known or masked):
        raise UserError("dictionaries hold no patient data: no known_at or masked", where=where)
    bad = [c for c in masked if c not in columns]
    if bad:
        raise UserError(f"masked column(s) {', '.join(bad)} are not in `columns`", where=where)
    time = spec.get("time") or (known[0] if known else None)
    as_tuple = lambda v: tuple(str(x).lower() for x in ([v] if isinstance(v, str) else (v or ())))  # noqa: E731
    return TableSpec(name=name, description=str(spec.get("description", "")), patient_key=patient_key,
                     known_at=tuple(str(k) for k in known), masked=masked, time=time, columns=columns,
                     code_columns=as_tuple(spec.get("code")), label_columns=as_tuple(spec.get("label")),
                     note=str(spec.get("note", "")), hidden=as_tuple(spec.get("hidden")))
