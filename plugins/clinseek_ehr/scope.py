"""Per-episode scoping: one SQL subquery per visible table, filtered to the bound patient and the rows known by the
cutoff, with future-revealing columns masked (NULL until known).

Templates are built once per run (per backend dialect) with two placeholders; `Scope.for_binding` fills in the
patient and the cutoff as literals, so an episode's scope is a plain immutable dict of strings: concurrent episodes
share nothing mutable.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlglot
from sqlglot import exp

from clinseek.errors import UserError
from clinseek_ehr.profile import Profile, TableSpec

PID = "'__clinseek_patient__'"
CUTOFF = "'__clinseek_cutoff__'"
_INT_TYPES = ("INT", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT", "INTEGER", "UBIGINT", "UINTEGER", "NUMERIC",
              "DECIMAL")


@dataclass(frozen=True)
class TableScope:
    spec: TableSpec
    columns: tuple[str, ...]             # visible columns present in the database, in database order
    types: dict[str, str]                # column -> database type (upper case)
    template: str                        # scoped SELECT with PID / CUTOFF placeholders, in the backend dialect
    time_sql: str | None                 # the time expression over the scoped columns (DuckDB SQL)
    audit_template: str = ""             # the patient's raw rows with each known_at / mask verdict (audit only)


@dataclass(frozen=True)
class EpisodeScope:
    """What one episode may read: table -> scoped subquery SQL, plus the bound cutoff."""

    tables: dict[str, str]
    cutoff: datetime
    patient: object


class Scope:
    def __init__(self, profile: Profile, db_columns: dict[str, list[tuple[str, str]]], base_name, dialect: str,
                 strict: bool = False, warn=None):
        """db_columns: table -> [(column, type)] as found in the database (any case)."""
        self.profile = profile
        self.dialect = dialect
        self.strict = strict
        self.tables: dict[str, TableScope] = {}
        self.skipped: dict[str, str] = {}
        lowered = {t.lower(): [(c.lower(), ty.upper()) for c, ty in cols] for t, cols in db_columns.items()}
        for name, spec in profile.tables.items():
            cols = lowered.get(name)
            if cols is None:
                self.skipped[name] = "not in the database"
                continue
            present = [(c, ty) for c, ty in cols if c in spec.columns]
            if spec.patient_key and spec.patient_key not in {c for c, _ in present}:
                self.skipped[name] = f"patient key {spec.patient_key} missing"
                continue
            if not present:
                self.skipped[name] = "none of the profile's columns exist"
                continue
            hidden = [c for c, _ in cols if c not in spec.columns and c not in spec.hidden]
            if hidden and warn:
                warn(f"ehr: {name}: column(s) {', '.join(hidden)} are not in profile {profile.name} and stay hidden")
            try:
                self.tables[name] = self._build(spec, present, base_name)
            except sqlglot.errors.SqlglotError as exc:
                raise UserError(f"profile {profile.name}: table {name}: an expression does not parse: {exc}",
                                where=profile.source) from None

    def _expr(self, text: str, base_name) -> exp.Expression:
        node = sqlglot.parse_one(text, read=self.profile.dialect)
        for t in list(node.find_all(exp.Table)):
            if t.args.get("db") and t.text("db").lower() == "src":
                t.replace(base_name(t.name.lower(), t.alias or None))
        return node

    def _build(self, spec: TableSpec, present: list[tuple[str, str]], base_name) -> TableScope:
        d = self.dialect
        op = "<" if self.strict else "<="
        names = [c for c, _ in present]
        select = []
        for col in names:
            q = exp.to_identifier(col).sql(dialect=d)
            if col in spec.masked:
                known = self._expr(spec.masked[col], base_name).sql(dialect=d)
                select.append(f"CASE WHEN ({known}) {op} {CUTOFF} THEN {spec.name}.{q} END AS {q}")
            else:
                select.append(f"{spec.name}.{q} AS {q}")
        where = []
        if spec.patient_key:
            where.append(f"{spec.name}.{exp.to_identifier(spec.patient_key).sql(dialect=d)} = {PID}")
        for k in spec.known_at:
            where.append(f"({self._expr(k, base_name).sql(dialect=d)}) {op} {CUTOFF}")
        src = base_name(spec.name, spec.name).sql(dialect=d)
        sql = f"SELECT {', '.join(select)} FROM {src}" + (f" WHERE {' AND '.join(where)}" if where else "")
        time_sql = None
        if spec.time:
            # Internal tool queries are written in DuckDB SQL and transpiled with the rest.
            time_sql = self._expr(spec.time, base_name).sql(dialect="duckdb")
        types = {c: ty for c, ty in present}
        # The audit's independent view: raw columns plus each rule's verdict, without the scoping rewrite.
        verdicts = [f"(({self._expr(k, base_name).sql(dialect=d)}) {op} {CUTOFF}) AS __known_{i}"
                    for i, k in enumerate(spec.known_at)]
        verdicts += [f"(({self._expr(e, base_name).sql(dialect=d)}) {op} {CUTOFF}) AS __mask_{c}"
                     for c, e in spec.masked.items() if c in names]
        raw = ", ".join([f"{spec.name}.{exp.to_identifier(c).sql(dialect=d)} AS {exp.to_identifier(c).sql(dialect=d)}"
                         for c in names] + verdicts)
        audit = f"SELECT {raw} FROM {src}" + (f" WHERE {where[0]}" if spec.patient_key else "")
        return TableScope(spec=spec, columns=tuple(names), types=types, template=sql, time_sql=time_sql,
                          audit_template=audit)

    # Binding -------------------------------------------------------------------------------------------------
    def for_binding(self, patient, cutoff: datetime) -> EpisodeScope:
        cutoff = naive_cutoff(cutoff)
        cut = f"CAST('{cutoff.isoformat(sep=' ')}' AS TIMESTAMP)"
        out = {}
        for name, ts in self.tables.items():
            pid = patient_literal(patient, ts.types.get(ts.spec.patient_key or "", ""))
            out[name] = ts.template.replace(PID, pid).replace(CUTOFF, cut)
        return EpisodeScope(tables=out, cutoff=cutoff, patient=patient)

    def audit_sql(self, table: str, patient, cutoff: datetime) -> str:
        ts = self.tables[table]
        cut = f"CAST('{naive_cutoff(cutoff).isoformat(sep=' ')}' AS TIMESTAMP)"
        pid = patient_literal(patient, ts.types.get(ts.spec.patient_key or "", ""))
        return ts.audit_template.replace(PID, pid).replace(CUTOFF, cut)


def naive_cutoff(t: datetime) -> datetime:
    """Cutoffs compare with naive database times. The Task model already refuses offsets (tasks.py); an aware time
    reaching here is a bug, and converting it would move the cutoff."""
    if t.tzinfo is not None:
        raise ValueError(f"cutoff {t.isoformat()} has a time-zone offset; prediction times are naive")
    return t


def patient_literal(patient, column_type: str) -> str:
    text = str(patient)
    if column_type.upper().startswith(_INT_TYPES) or column_type.upper() in _INT_TYPES:
        if isinstance(patient, bool) or not text.lstrip("-").isdigit():
            # A non-numeric id can match no integer key: scope to nothing rather than fail.
            return "NULL"
        return str(int(text))
    return exp.Literal.string(text).sql()
