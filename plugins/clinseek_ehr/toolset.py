"""The `ehr` toolset: leak-free access to a raw EHR (DuckDB or PostgreSQL) through seven tools.

Every tool reads the same per-episode scoped subqueries (see scope.py): the bound patient's rows known by the
prediction time, future-revealing columns masked. No tool takes a patient id or a time bound.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from clinseek.errors import ToolError, UserError
from clinseek.toolsets import Episode, Toolset, ToolsetConfig, tool

STATE_KEY = "ehr_scope"


class EhrConfig(ToolsetConfig):
    database: str = Field("demo:", description="a DuckDB file, a postgresql:// DSN, or demo:[patients=N,seed=S]")
    profile: str = Field("mimic_iv", description="mimic_iv, omop_cdm, or a path to a profile YAML file")
    max_rows: int = Field(50, ge=1, le=10_000, description="rows shown per tool call")
    max_chars: int = Field(8000, ge=500, le=200_000, description="characters per observation")
    sql_timeout_s: float = Field(5.0, gt=0, le=600, description="time limit of one statement")
    cutoff: Literal["inclusive", "strict"] = Field(
        "inclusive", description="inclusive: known_at <= prediction time (MEDS); strict: <")
    memory_limit: str = Field("2GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
                              description="DuckDB memory limit")
    pg_schema: str = Field("public", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="PostgreSQL schema")
    pool_size: int = Field(4, ge=1, le=64, description="PostgreSQL connections")


class EhrToolset(Toolset):
    name = "ehr"
    description = ("A patient's raw EHR tables, already limited to this patient and to what was known at the "
                   "prediction time. Explore with ehr_tables/ehr_describe, query with ehr_sql (DuckDB SQL).")
    Config = EhrConfig
    patient_data = True

    def __init__(self, config: EhrConfig, context=None):
        super().__init__(config, context)
        self.backend = None
        self.scope = None
        self.profile = None
        self._dict_counts: dict[str, int] = {}

    # Lifecycle ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        from clinseek_ehr.backends import open_backend
        from clinseek_ehr.profile import load_profile
        from clinseek_ehr.scope import Scope

        base_dir = getattr(self.context, "recipe_dir", None)
        self.profile = load_profile(self.config.profile, base_dir)
        database = resolve_database(self.config.database, self.context)
        self.backend = open_backend(database, base_dir, self.config.memory_limit, self.config.pool_size,
                                    self.config.pg_schema)
        self.backend.open()
        warn = getattr(self.context, "warn", None)
        self.scope = Scope(self.profile, self.backend.table_columns(), self.backend.base_name,
                           self.backend.dialect, strict=self.config.cutoff == "strict", warn=warn)
        if not self.scope.tables:
            self.close()
            raise UserError(f"no table of profile {self.profile.name!r} was found in {database}",
                            where="tools.ehr.with", hint="check `database` and `profile`")
        for name in self.dictionaries:
            ts = self.scope.tables[name]
            res = self.backend.run(f"SELECT count(*) FROM ({ts.template}) AS d", 1, self.config.sql_timeout_s)
            self._dict_counts[name] = int(res.rows[0][0])

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def bind(self, episode: Episode) -> None:
        episode.state[STATE_KEY] = self.scope.for_binding(episode.binding.subject_id, episode.binding.prediction_time)

    def unbind(self, episode: Episode) -> None:
        episode.state.pop(STATE_KEY, None)

    def manifest(self) -> dict:
        return {"profile": self.profile.name if self.profile else None,
                "backend": self.backend.dialect if self.backend else None,
                "tables": sorted(self.scope.tables) if self.scope else [],
                "skipped_tables": dict(self.scope.skipped) if self.scope else {},
                "cutoff": self.config.cutoff}

    def curate(self, binding, window_hours: float = 24, max_events: int = 100) -> str:
        """The curated evidence package for `agent.evidence: curated` (see curate.curated_events)."""
        from clinseek_ehr.curate import curated_events

        return curated_events(self, binding, window_hours=window_hours, max_events=max_events)

    # Helpers -----------------------------------------------------------------------------------------------
    @property
    def dictionaries(self) -> list[str]:
        return [n for n, t in self.scope.tables.items() if t.spec.is_dictionary]

    @property
    def patient_tables(self) -> list[str]:
        return [n for n, t in self.scope.tables.items() if not t.spec.is_dictionary]

    def episode_scope(self, episode: Episode):
        if STATE_KEY not in episode.state:
            self.bind(episode)
        return episode.state[STATE_KEY]

    def run_sql(self, episode: Episode, sql: str, max_rows: int | None = None, trusted: bool = False,
                count_more: bool = True):
        """Check (unless trusted), scope and run one query for this episode; returns a backends.Result."""
        from clinseek_ehr.guard import CheckedQuery, check_query, compose

        es = self.episode_scope(episode)
        if trusted:
            import sqlglot
            from sqlglot import exp

            ast = sqlglot.parse_one(sql, read="duckdb")
            used = {t.name.lower() for t in ast.find_all(exp.Table) if t.name.lower() in es.tables}
            checked = CheckedQuery(ast=ast, tables=used)
        else:
            checked = check_query(sql, es.tables)
        final = compose(checked, es.tables, self.backend.dialect)
        return self.backend.run(final, max_rows or self.config.max_rows, self.config.sql_timeout_s, count_more)

    def _table_arg(self, table: str, allow_dictionary: bool = True) -> str:
        name = (table or "").strip().strip('"').lower()
        if name not in self.scope.tables or (not allow_dictionary and name in self.dictionaries):
            pool = self.scope.tables if allow_dictionary else self.patient_tables
            raise ToolError(f"table {table!r} is not available; available tables: {', '.join(sorted(pool))}")
        return name

    def _render(self, res, hint: str | None = None) -> str:
        from clinseek_ehr.render import MORE_HINT, table_text

        return table_text(res.columns, res.rows, res.more, res.more_capped, self.config.max_chars,
                          hint or MORE_HINT)

    # Tools -------------------------------------------------------------------------------------------------
    @tool
    def ehr_tables(self, episode: Episode) -> str:
        """List the EHR tables you can query, with a description and this patient's row count (rows known by the
        prediction time). Dictionary tables (code lists) are shared by all patients.
        """
        es = self.episode_scope(episode)
        parts = [f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in self.patient_tables]
        res = self.run_sql(episode, " UNION ALL ".join(parts), max_rows=len(parts) + 1, trusted=True)
        counts = {t: n for t, n in res.rows}
        lines = [f"Patient tables (this patient, known by {es.cutoff:%Y-%m-%d %H:%M}); query with ehr_sql in DuckDB "
                 "SQL using these bare names:", "table|rows|description"]
        for t in self.patient_tables:
            lines.append(f"{t}|{counts.get(t, 0)}|{self.scope.tables[t].spec.description}")
        lines += ["Dictionaries (all rows visible):", "table|rows|description"]
        for t in self.dictionaries:
            lines.append(f"{t}|{self._dict_counts.get(t, 0)}|{self.scope.tables[t].spec.description}")
        if self.profile.join_hints:
            lines.append("Joins: " + "; ".join(self.profile.join_hints))
        return _bound("\n".join(lines), self.config.max_chars)

    @tool
    def ehr_describe(self, episode: Episode, table: str) -> str:
        """Describe one table: its columns, types, what each means, and a few example values for this patient.

        Args:
            table: a table name from ehr_tables.
        """
        from clinseek_ehr.render import fmt

        name = self._table_arg(table)
        ts = self.scope.tables[name]
        res = self.run_sql(episode, f"SELECT * FROM {name} LIMIT 200", max_rows=200, trusted=True, count_more=False)
        examples: dict[str, list[str]] = {c: [] for c in ts.columns}
        for row in res.rows:
            for c, v in zip(res.columns, row):
                s = fmt(v, 40)
                if v is not None and s not in examples[c] and len(examples[c]) < 3:
                    examples[c].append(s)
        spec = ts.spec
        head = f"{name}: {spec.description}"
        if spec.note:
            head += f"\nvisibility: {spec.note}"
        lines = [head, "column|type|description|examples"]
        for c in ts.columns:
            desc = spec.columns.get(c, "")
            if c in spec.masked:
                desc += " [NULL until known at the prediction time]"
            lines.append(f"{c}|{ts.types.get(c, '')}|{desc}|{', '.join(examples[c])}")
        return _bound("\n".join(lines), self.config.max_chars)

    @tool
    def ehr_sql(self, episode: Episode, query: str) -> str:
        """Run one read-only SQL SELECT (DuckDB dialect) over this patient's tables and the dictionaries.

        Tables are already limited to this patient and to what was known at the prediction time; columns whose
        value was not yet known read NULL. Use bare table names from ehr_tables (no schema prefix). WITH, UNION,
        joins, subqueries and window functions are fine; writes, settings, files and table functions are refused.
        Only the first rows are shown: aggregate or add LIMIT for long results.

        Args:
            query: one SELECT statement in DuckDB SQL.
        """
        return self._render(self.run_sql(episode, query))

    @tool
    def ehr_search(self, episode: Episode, keyword: str, table: str | None = None) -> str:
        """Find a literal word or phrase (case-insensitive, not a pattern) in this patient's text columns (notes,
        drug names, comments, ...) and in dictionary labels. Newest matches first.

        Args:
            keyword: the literal text to look for, e.g. "pneumonia" or "vancomycin".
            table: search only this table.
        """
        from sqlglot import exp

        kw = (keyword or "").strip()
        if len(kw) < 2:
            raise ToolError("keyword must have at least 2 characters")
        tables = [self._table_arg(table)] if table else list(self.scope.tables)
        lit = exp.Literal.string(kw.lower()).sql(dialect="duckdb")
        parts = []
        for t in tables:
            ts = self.scope.tables[t]
            cols = ts.spec.label_columns if ts.spec.is_dictionary else [
                c for c in ts.columns if _is_text(ts.types.get(c, "")) and c != ts.spec.patient_key]
            code = ts.spec.code_columns[0] if ts.spec.code_columns else None
            time = "CAST(NULL AS TIMESTAMP)" if ts.spec.is_dictionary or not ts.time_sql else f"CAST({ts.time_sql} AS TIMESTAMP)"
            key = f"CAST({code} AS VARCHAR)" if code else "CAST(NULL AS VARCHAR)"
            for c in cols:
                if c not in ts.columns:
                    continue
                parts.append(f"SELECT '{t}' AS tbl, {time} AS time, {key} AS code, '{c}' AS col, "
                             f"CAST({c} AS VARCHAR) AS val FROM {t} WHERE strpos(lower(CAST({c} AS VARCHAR)), {lit}) > 0")
        if not parts:
            raise ToolError(f"{table} has no text columns to search")
        sql = " UNION ALL ".join(parts) + " ORDER BY time DESC NULLS LAST, tbl, code"
        res = self.run_sql(episode, sql, trusted=True)
        rows = [(t, tm, code, c, _snippet(v, kw)) for t, tm, code, c, v in res.rows]
        res.columns, res.rows = ["table", "time", "code", "column", "match"], rows
        return self._render(res, "narrow with table= or a longer keyword")

    @tool
    def ehr_timeline(self, episode: Episode, start: str | None = None, end: str | None = None) -> str:
        """What happened when: for each day, how many rows each table has (up to the prediction time), newest
        day first.

        Args:
            start: first day to include, YYYY-MM-DD (default: all history).
            end: last day to include, YYYY-MM-DD (default: the prediction time).
        """
        lo, hi = _day(start, "start"), _day(end, "end")
        parts = []
        for t in self.patient_tables:
            ts = self.scope.tables[t]
            if not ts.time_sql:
                continue
            tm = f"CAST({ts.time_sql} AS TIMESTAMP)"
            cond = [f"{tm} IS NOT NULL"]
            if lo:
                cond.append(f"{tm} >= CAST('{lo:%Y-%m-%d}' AS TIMESTAMP)")
            if hi:
                cond.append(f"{tm} < CAST('{hi + timedelta(days=1):%Y-%m-%d}' AS TIMESTAMP)")
            parts.append(f"SELECT CAST({tm} AS DATE) AS day, '{t}' AS tbl, count(*) AS n FROM {t} "
                         f"WHERE {' AND '.join(cond)} GROUP BY 1")
        sql = "SELECT day, tbl, n FROM (" + " UNION ALL ".join(parts) + ") AS x ORDER BY day DESC, tbl"
        res = self.run_sql(episode, sql, max_rows=100_000, trusted=True, count_more=False)
        days: dict = {}
        for day, t, n in res.rows:
            days.setdefault(day, []).append(f"{t} {n}")
        if not days:
            return "no rows in that period"
        lines = ["day|rows per table"]
        shown = list(days.items())[: self.config.max_rows]
        lines += [f"{d.isoformat() if hasattr(d, 'isoformat') else d}|{', '.join(v)}" for d, v in shown]
        if len(days) > len(shown):
            lines.append(f"... {len(days) - len(shown)} earlier days not shown (narrow with start/end)")
        return _bound("\n".join(lines), self.config.max_chars)

    @tool
    def ehr_latest(self, episode: Episode, table: str, limit: int = 10) -> str:
        """The most recent rows of one table before the prediction time, newest first.

        Args:
            table: a patient table from ehr_tables.
            limit: how many rows (at most the configured row cap).
        """
        name = self._table_arg(table, allow_dictionary=False)
        ts = self.scope.tables[name]
        n = max(1, min(int(limit), self.config.max_rows))
        order = f" ORDER BY {ts.time_sql} DESC NULLS LAST" if ts.time_sql else ""
        # No LIMIT: the row cap stops at n and the note says how many older rows there are.
        res = self.run_sql(episode, f"SELECT * FROM {name}{order}", max_rows=n, trusted=True)
        return self._render(res, "older rows: raise limit or use ehr_sql")

    @tool
    def ehr_lookup(self, episode: Episode, term: str) -> str:
        """Look up dictionary entries (lab items, chart items, ICD diagnosis and procedure codes) by exact code or by
        words in their labels.

        Args:
            term: a code (e.g. 50912, I10, 428.0) or words (e.g. "creatinine", "heart failure").
        """
        from sqlglot import exp

        term = (term or "").strip()
        if not term:
            raise ToolError("term must not be empty")
        words = [w for w in re.split(r"\s+", term.lower()) if w][:8]
        code_lit = exp.Literal.string(term.lower()).sql()
        nodot_lit = exp.Literal.string(term.lower().replace(".", "")).sql()
        parts = []
        for t in self.dictionaries:
            spec = self.scope.tables[t].spec
            cols = self.scope.tables[t].columns
            codes = [c for c in spec.code_columns if c in cols]
            labels = [c for c in spec.label_columns if c in cols]
            if not codes or not labels:
                continue
            code = f"CAST({codes[0]} AS VARCHAR)"
            text = f"lower(concat_ws(' ', {', '.join(labels)}))"
            word_match = " AND ".join(f"strpos({text}, {exp.Literal.string(w).sql()}) > 0" for w in words)
            exact = f"lower(trim({code})) IN ({code_lit}, {nodot_lit})"
            parts.append(f"SELECT '{t}' AS dictionary, {code} AS code, concat_ws(' | ', {', '.join(labels)}) AS label, "
                         f"CASE WHEN {exact} THEN 0 ELSE 1 END AS rank FROM {t} WHERE {exact} OR ({word_match})")
        sql = "SELECT dictionary, code, label FROM (" + " UNION ALL ".join(parts) + \
              ") AS x ORDER BY rank, length(label), dictionary, code"
        res = self.run_sql(episode, sql, trusted=True)
        return self._render(res, "use more words or an exact code")


# Module helpers ------------------------------------------------------------------------------------------------
def resolve_database(database: str, context=None) -> str:
    """`demo:` / `demo:patients=N,seed=S` -> the cached demo cohort's DuckDB file; anything else unchanged."""
    if not database.startswith("demo:"):
        return database
    opts: dict[str, int] = {}
    for part in filter(None, database[5:].split(",")):
        key, _, value = part.partition("=")
        if key.strip() not in ("patients", "seed") or not value.strip().isdigit():
            raise UserError(f"bad demo database spec {database!r}", where="tools.ehr.with.database",
                            hint="write demo: or demo:patients=200,seed=0")
        opts[key.strip()] = int(value)
    try:
        from clinseek.cohort.demo import ensure_demo
    except ImportError as exc:
        raise UserError(f"the demo cohort is not available in this installation ({exc})",
                        where="tools.ehr.with.database") from None
    cache_dir = getattr(context, "cache_dir", None)
    demo = ensure_demo(**opts, cache_dir=cache_dir) if cache_dir else ensure_demo(**opts)
    return str(demo.db)


def _is_text(db_type: str) -> bool:
    t = db_type.upper()
    return any(k in t for k in ("CHAR", "TEXT", "STRING")) or t == "VARCHAR"


def _snippet(value, kw: str, width: int = 80) -> str:
    text = " ".join(str(value or "").split())
    i = text.lower().find(kw.lower())
    if i < 0 or len(text) <= 2 * width:
        return text[: 2 * width]
    lo, hi = max(0, i - width), min(len(text), i + len(kw) + width)
    return ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else "")


def _day(text: str | None, what: str):
    if text is None or str(text).strip() == "":
        return None
    try:
        return datetime.fromisoformat(str(text).strip()[:10])
    except ValueError:
        raise ToolError(f"{what} must be a date like 2180-05-06, got {text!r}") from None


def _bound(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 80].rsplit("\n", 1)[0]
    return cut + f"\n... {len(text) - len(cut)} more characters not shown (ask for less)"


__all__ = ["EhrToolset", "EhrConfig", "resolve_database"]
