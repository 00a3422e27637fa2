"""The `ehr` toolset: leak-free access to a raw EHR (DuckDB or PostgreSQL) through seven tools.

Every tool reads the same per-episode scoped subqueries (see scope.py): the bound patient's rows known by the
prediction time, future-revealing columns masked. No tool takes a patient id or a time bound.
"""
from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from clinseek.errors import ToolError, UserError
from clinseek.toolsets import Episode, Toolset, ToolsetConfig, tool

TOTAL = "__clinseek_total"
# Placeholders for the string literals of the tools' own SQL that change per call (see run_sql's `literals`).
KEYWORD, DAY_FROM, DAY_UNTIL = "__clinseek_keyword__", "__clinseek_day_from__", "__clinseek_day_until__"
STATE_KEY = "ehr_scope"   # + the toolset's id: two ehr toolsets on one Episode never read each other's scope


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
    threads: int = Field(1, ge=1, le=64, description="DuckDB threads per query; 1 suits many small per-patient "
                                                     "queries from concurrent episodes")
    snapshot: bool = Field(True, description="DuckDB: copy each table an episode reads once, already scoped, into "
                                             "that episode's own temporary table (faster repeated queries)")
    pg_schema: str = Field("public", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="PostgreSQL schema")
    pool_size: int = Field(4, ge=1, le=64, description="PostgreSQL connections")
    candidate_embedder: str = Field("all-minilm-l6-v2", description="registered embedder of ehr_candidates' "
                                                                   "semantic mode (local; nothing leaves the site)")


class EhrToolset(Toolset):
    name = "ehr"
    description = ("A patient's raw EHR tables, already limited to this patient and to what was known at the "
                   "prediction time. Explore with ehr_tables/ehr_describe, query with ehr_sql (DuckDB SQL).")
    Config = EhrConfig
    patient_data = True
    can_curate = True

    def __init__(self, config: EhrConfig, context=None):
        super().__init__(config, context)
        self.backend = None
        self.scope = None
        self.profile = None
        self._dict_counts: dict[str, int] = {}
        self._dict_index: dict | None = None
        self._state_key = f"{STATE_KEY}@{id(self):x}"
        self._session_key = f"{self._state_key}:session"
        self._index_lock = threading.Lock()
        self._session_lock = threading.Lock()
        self._relation_names: frozenset[str] = frozenset()

    # Lifecycle ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        from clinseek_ehr.backends import open_backend
        from clinseek_ehr.profile import load_profile
        from clinseek_ehr.scope import Scope

        base_dir = getattr(self.context, "recipe_dir", None)
        self.profile = load_profile(self.config.profile, base_dir)
        database = resolve_database(self.config.database, self.context)
        self.backend = open_backend(database, base_dir, self.config.memory_limit, self.config.pool_size,
                                    self.config.pg_schema, threads=self.config.threads)
        self.backend.open()
        warn = getattr(self.context, "warn", None)
        columns = self.backend.table_columns()
        # Every relation name of the database, visible or not: a WITH name may not take one (guard.py).
        self._relation_names = frozenset(name.lower() for name in columns)
        self.scope = Scope(self.profile, columns, self.backend.base_name,
                           self.backend.dialect, strict=self.config.cutoff == "strict", warn=warn)
        if not self.scope.tables:
            self.close()
            raise UserError(f"no table of profile {self.profile.name!r} was found in {database}",
                            where="tools.ehr.with", hint="check `database` and `profile`")
        self._check_templates()
        for name in self.dictionaries:
            ts = self.scope.tables[name]
            res = self.backend.run(f"SELECT count(*) FROM ({ts.template}) AS d", 1, self.config.sql_timeout_s)
            self._dict_counts[name] = int(res.rows[0][0])
        # Index the dictionaries for ehr_lookup/ehr_search while the first episodes start.
        threading.Thread(target=self._warm_index, name="clinseek-ehr-index", daemon=True).start()

    def _check_templates(self) -> None:
        """Plan every scoped table once, so a profile rule naming a missing column fails here, not in each call."""
        from clinseek_ehr.scope import CUTOFF, PID

        problems = []
        for name, ts in self.scope.tables.items():
            sql = ts.template.replace(PID, "NULL").replace(CUTOFF, "CAST('2000-01-01 00:00:00' AS TIMESTAMP)")
            try:
                self.backend.run(f"SELECT * FROM ({sql}) AS t LIMIT 0", 1, max(30.0, self.config.sql_timeout_s))
            except ToolError as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            self.close()
            raise UserError(f"profile {self.profile.name!r} does not fit the database: " + "; ".join(problems),
                            where="tools.ehr.with.profile",
                            hint="fix the profile's known_at / masked rules, or list the columns the database has")

    def _warm_index(self) -> None:
        try:
            for idx in self._dictionary_index().values():
                idx.find_words(["warm"])
        except Exception:  # noqa: BLE001 - the first lookup builds it again and reports any error
            with self._index_lock:
                self._dict_index = None

    def close(self) -> None:
        with self._index_lock:   # not while the background index build still reads
            self._dict_index = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def preflight(self) -> list:
        """For `clinseek validate`: the profile loads, the database file exists or the PostgreSQL server answers
        (3 s timeout). A `demo:` database is built by open(), not here."""
        from clinseek.toolsets import missing_path
        from clinseek_ehr.profile import load_profile

        problems = []
        try:
            load_profile(self.config.profile, getattr(self.context, "recipe_dir", None))
        except UserError as exc:
            problems.append(("profile", exc.message))
        db = self.config.database
        if db.startswith(("postgresql://", "postgres://")) or "dbname=" in db:
            reason = _postgres_answers(db)
            if reason:
                problems.append(("database", reason))
        elif not db.startswith("demo:"):
            reason = missing_path(db, self.context)
            if reason:
                problems.append(("database", f"EHR database {reason}"))
        return problems

    def bind(self, episode: Episode) -> None:
        episode.state[self._state_key] = self.scope.for_binding(episode.binding.subject_id,
                                                                episode.binding.prediction_time)

    def unbind(self, episode: Episode) -> None:
        episode.state.pop(self._state_key, None)
        session = episode.state.pop(self._session_key, None)
        if session is not None:
            with session.lock:
                session.close()

    def missing_patients(self, tasks: list) -> dict[str, str]:
        """Tasks naming a patient or admission the database lacks (roster.py), checked before any episode."""
        from clinseek_ehr.roster import missing_patients

        return missing_patients(self, tasks)

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
        if self._state_key not in episode.state:
            self.bind(episode)
        return episode.state[self._state_key]

    def run_sql(self, episode: Episode, sql: str, max_rows: int | None = None, trusted: bool = False,
                count_more: bool = True, literals: dict[str, str] | None = None):
        """Check (unless trusted), scope and run one query for this episode; returns a backends.Result.

        `trusted` is for the tools' own SQL: parsed without the guard's checks but scoped exactly the same way.
        `literals` (trusted SQL only): placeholder -> value for string literals that change from call to call (a
        search keyword, a day). The SQL names the placeholder as a string literal; it is parsed and transpiled
        once, and each call substitutes the value as a quoted literal of the backend's dialect.
        """
        from clinseek_ehr.guard import compose, prepare_query, prepare_trusted

        es = self.episode_scope(episode)
        dialect = self.backend.dialect
        if trusted:
            prepared = prepare_trusted(sql, frozenset(es.tables), dialect)
        else:
            prepared = prepare_query(sql, frozenset(es.tables), dialect, self._relation_names)
        max_rows, timeout = max_rows or self.config.max_rows, self.config.sql_timeout_s
        session = self._session(episode)
        if session is None:
            final = _fill(compose(prepared, es.tables, dialect), literals, dialect, trusted)
            return self.backend.run(final, max_rows, timeout, count_more)
        with session.lock:
            # Patient tables are read by their bare names from the episode's copies; dictionaries (and a table
            # whose copy failed) through CTEs.
            ctes = {t: es.tables[t] for t in prepared.tables
                    if self.scope.tables[t].spec.is_dictionary or not session.ensure(t, es.tables[t], timeout)}
            final = _fill(compose(prepared, ctes, dialect), literals, dialect, trusted)
            return self.backend.run(final, max_rows, timeout, count_more, session)

    def _session(self, episode: Episode):
        """The episode's snapshot session (DuckDB, `snapshot: true`), made on first use; None otherwise."""
        if not self.config.snapshot:
            return None
        session = episode.state.get(self._session_key)
        if session is None:
            with self._session_lock:
                session = episode.state.get(self._session_key)
                if session is None:
                    session = self.backend.session()
                    if session is None:
                        return None
                    episode.state[self._session_key] = session
        return session

    def tool_schema(self, spec) -> dict:
        """`table` arguments list the tables this database really has (the patient tables for ehr_latest), so a
        model is shown the choices and a constrained host cannot name a table that does not exist."""
        schema = spec.schema()
        props = schema["parameters"].get("properties", {})
        if "table" not in props or self.scope is None:
            return schema
        pool = self.patient_tables if spec.name == "ehr_latest" else sorted(self.scope.tables)
        schema = {**schema, "parameters": {**schema["parameters"],
                                           "properties": {**props, "table": {**props["table"], "enum": pool}}}}
        return schema

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

        from clinseek_ehr.render import table_text

        kw = (keyword or "").strip()
        if len(kw) < 2:
            raise ToolError("keyword must have at least 2 characters")
        tables = [self._table_arg(table)] if table else list(self.scope.tables)
        lit = exp.Literal.string(KEYWORD).sql(dialect="duckdb")
        parts = []
        for t in tables:
            ts = self.scope.tables[t]
            if ts.spec.is_dictionary:
                continue
            cols = [c for c in ts.columns if _is_text(ts.types.get(c, "")) and c != ts.spec.patient_key]
            if not cols:
                continue
            names = ", ".join(f"'{c}'" for c in cols)
            values = ", ".join(f"CAST({c} AS VARCHAR)" for c in cols)
            time = f"CAST({ts.time_sql} AS TIMESTAMP)" if ts.time_sql else "CAST(NULL AS TIMESTAMP)"
            # One scan per table, its text columns unnested side by side into (column, value) pairs: a far smaller
            # plan than a CASE per column (about 3x faster), and every matching column is reported.
            parts.append(f"SELECT '{t}' AS tbl, time, col, val FROM (SELECT {time} AS time, unnest([{names}]) AS col, "
                         f"unnest([{values}]) AS val FROM {t}) AS u WHERE strpos(lower(val), {lit}) > 0")
        rows: list[tuple] = []
        more = 0
        if parts:
            sql = " UNION ALL ".join(parts) + " ORDER BY time DESC NULLS LAST, tbl, col, val"
            res = self.run_sql(episode, sql, trusted=True, literals={KEYWORD: kw.lower()})
            rows = [(t, tm, "", c, _snippet(v, kw)) for t, tm, c, v in res.rows]
            more = res.more
        limit = self.config.max_rows - len(rows)
        for name, code, label in self._dictionary_matches(kw.lower(), tables):
            if limit <= 0:
                more += 1
                continue
            rows.append((name, None, code, "label", _snippet(label, kw)))
            limit -= 1
        if table and not parts and tables[0] not in self.dictionaries:
            raise ToolError(f"{tables[0]} has no text columns to search; use ehr_sql")
        return table_text(["table", "time", "code", "column", "match"], rows, more, False, self.config.max_chars,
                          "narrow with table= or a longer keyword")

    @tool
    def ehr_timeline(self, episode: Episode, start: str | None = None, end: str | None = None) -> str:
        """What happened when: for each day, how many rows each table has (up to the prediction time), newest
        day first.

        Args:
            start: first day to include, YYYY-MM-DD (default: all history).
            end: last day to include, YYYY-MM-DD (default: the prediction time).
        """
        lo, hi = _day(start, "start"), _day(end, "end")
        today = self.episode_scope(episode).cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
        if hi is not None and hi > today:
            hi = today   # nothing after the prediction time exists; also keeps hi + 1 day in range
        if lo is not None and hi is not None and lo > hi:
            raise ToolError(f"start {lo:%Y-%m-%d} is after end {hi:%Y-%m-%d} (the prediction day is "
                            f"{today:%Y-%m-%d}); give a start on or before the end")
        parts = []
        for t in self.patient_tables:
            ts = self.scope.tables[t]
            if not ts.time_sql:
                continue
            tm = f"CAST({ts.time_sql} AS TIMESTAMP)"
            cond = [f"{tm} IS NOT NULL"]
            if lo:
                cond.append(f"{tm} >= CAST('{DAY_FROM}' AS TIMESTAMP)")
            if hi:
                cond.append(f"{tm} < CAST('{DAY_UNTIL}' AS TIMESTAMP)")
            parts.append(f"SELECT CAST({tm} AS DATE) AS day, '{t}' AS tbl, count(*) AS n FROM {t} "
                         f"WHERE {' AND '.join(cond)} GROUP BY 1")
        sql = "SELECT day, tbl, n FROM (" + " UNION ALL ".join(parts) + ") AS x ORDER BY day DESC, tbl"
        bounds = {DAY_FROM: f"{lo:%Y-%m-%d}" if lo else "",
                  DAY_UNTIL: f"{hi + timedelta(days=1):%Y-%m-%d}" if hi else ""}
        res = self.run_sql(episode, sql, max_rows=100_000, trusted=True, count_more=False, literals=bounds)
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

    def _candidate_embedder(self):
        """The registered embedder (the kb plugin's all-MiniLM-L6-v2 by default), made once per run."""
        with self._index_lock:
            if getattr(self, "_embedder", None) is None:
                from clinseek.plugins import get_registry

                try:
                    cls = get_registry().get("embedders", self.config.candidate_embedder)
                except UserError as exc:
                    raise ToolError(f"semantic mode needs an embedder: {exc.message}; use mode keyword or fuzzy") \
                        from None
                self._embedder = cls()
                self._candidate_vectors = {}
            return self._embedder

    @tool
    def ehr_candidates(self, episode: Episode, query: str,
                       mode: Literal["keyword", "fuzzy", "semantic"] = "keyword", limit: int = 10) -> str:
        """Map free text onto this question's candidate answers, best first, with their exact spelling.

        Args:
            query: the words found in the record (e.g. 'kidney failure').
            mode: keyword (the query's words in the candidate), fuzzy (string similarity, tolerant of typos) or
                semantic (meaning, through the local sentence embedder).
            limit: at most this many candidates.
        """
        from clinseek_ehr.candidates import rank

        candidates = list(getattr(episode.task, "candidates", None) or [])
        if not candidates:
            raise ToolError("this question has no candidate list: answer in your own words")
        if not str(query).strip():
            raise ToolError("query is empty: give the words to match")
        n = max(1, min(int(limit), self.config.max_rows))
        if mode == "semantic":
            from clinseek_ehr.candidates import rank_semantic

            rows = rank_semantic(self._candidate_embedder(), str(query), candidates, n, self._candidate_vectors)
        else:
            rows = rank(str(query), candidates, mode, n)
        if not rows:
            return f"no candidate matches {query!r} by {mode}; try mode fuzzy or other words"
        return _bound("rank | candidate | score\n" + "\n".join(f"{r} | {c} | {s}" for r, c, s in rows),
                      self.config.max_chars)

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
        # Ties (labs of one specimen share a time) are broken by every column, so both backends agree.
        ties = ", ".join(["1 DESC NULLS LAST"] + [f"{i} NULLS LAST" for i in range(2, len(ts.columns) + 1)])
        order = f" ORDER BY {ts.time_sql} DESC NULLS LAST, {ties}" if ts.time_sql else f" ORDER BY {ties}"
        # The total comes from a window count in the same statement, so the note can say how many older rows
        # there are without fetching them.
        res = self.run_sql(episode, f"SELECT *, count(*) OVER () AS {TOTAL} FROM {name}{order} LIMIT {n}",
                           max_rows=n, trusted=True, count_more=False)
        total = res.rows[0][-1] if res.rows else 0
        res.columns, res.types = res.columns[:-1], res.types[:-1]
        res.rows = [r[:-1] for r in res.rows]
        res.more, res.more_capped = max(0, int(total) - len(res.rows)), False
        return self._render(res, "older rows: raise limit or use ehr_sql")

    @tool
    def ehr_lookup(self, episode: Episode, term: str) -> str:
        """Look up dictionary entries (lab items, chart items, ICD diagnosis and procedure codes) by exact code or by
        words in their labels.

        Args:
            term: a code (e.g. 50912, I10, 428.0) or words (e.g. "creatinine", "heart failure").
        """
        from clinseek_ehr.render import table_text

        term = (term or "").strip()
        if not term:
            raise ToolError("term must not be empty")
        low = term.lower()
        words = [w for w in re.split(r"\s+", low) if w][:8]
        exact, partial = [], []
        index = self._dictionary_index()
        for name, idx in index.items():
            for key in {low, low.replace(".", "")}:
                for i in idx.by_code.get(key, ()):
                    exact.append((name, idx.entries[i][0], idx.entries[i][1]))
            for i in idx.find_words(words):
                partial.append((len(idx.lowered[i]), name, idx.entries[i][0], idx.entries[i][1]))
        if not exact and not partial:   # no label word starts so: fall back to a substring scan
            for name, idx in index.items():
                for i in idx.find_all(words):
                    partial.append((len(idx.lowered[i]), name, idx.entries[i][0], idx.entries[i][1]))
        partial.sort()
        seen = {(n, c) for n, c, _ in exact}
        rows = exact + [(n, c, lab) for _, n, c, lab in partial if (n, c) not in seen]
        n = self.config.max_rows
        return table_text(["dictionary", "code", "label"], rows[:n], max(0, len(rows) - n), False,
                          self.config.max_chars, "use more words or an exact code")

    # Dictionaries are the same for every episode: index them once (code -> rows, lower-cased labels).
    def _dictionary_index(self) -> dict:
        with self._index_lock:
            if self._dict_index is None:
                index = {}
                for name in self.dictionaries:
                    ts = self.scope.tables[name]
                    codes = [c for c in ts.spec.code_columns if c in ts.columns]
                    labels = [c for c in ts.spec.label_columns if c in ts.columns]
                    if not codes or not labels:
                        continue
                    res = self.backend.run(f"SELECT {', '.join([codes[0]] + labels)} FROM ({ts.template}) AS d",
                                           10_000_000, max(60.0, self.config.sql_timeout_s), count_more=False)
                    entries = [(str(r[0]), " | ".join(str(v) for v in r[1:] if v is not None)) for r in res.rows]
                    index[name] = LabelIndex(entries)
                self._dict_index = index
            return self._dict_index

    def _dictionary_matches(self, kw_lower: str, tables: list[str]):
        for name, idx in self._dictionary_index().items():
            if name not in tables:
                continue
            for i in idx.find_all([kw_lower]):
                yield name, idx.entries[i][0], idx.entries[i][1]


# Module helpers ------------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(r"[a-z0-9]+")


class LabelIndex:
    """A dictionary's (code, label) rows with a fast literal substring search over the lower-cased labels."""

    def __init__(self, entries: list[tuple[str, str]]):
        import bisect

        self._bisect = bisect.bisect_right
        self.entries = entries
        self.lowered = [lab.lower().replace("\n", " ") for _, lab in entries]
        self.by_code: dict[str, list[int]] = {}
        for i, (code, _) in enumerate(entries):
            self.by_code.setdefault(code.strip().lower(), []).append(i)
        # One string with a newline after each label: str.find scans it in C, offsets map hits back to rows.
        self.blob = "\n".join(self.lowered) + "\n"
        self.starts, pos = [], 0
        for text in self.lowered:
            self.starts.append(pos)
            pos += len(text) + 1

    def find_all(self, words: list[str]) -> list[int]:
        words = [w for w in words if w]
        if not words:
            return []
        first = max(words, key=len)
        hits, pos = [], self.blob.find(first)
        while pos >= 0:
            i = self._bisect(self.starts, pos) - 1
            hits.append(i)
            pos = self.blob.find(first, self.starts[i] + len(self.lowered[i]) + 1)
        rest = [w for w in words if w is not first]
        return [i for i in hits if all(w in self.lowered[i] for w in rest)]

    def _build_tokens(self) -> None:
        tokens: dict[str, list[int]] = {}
        for i, text in enumerate(self.lowered):
            for tok in set(_TOKEN_RE.findall(text)):
                tokens.setdefault(tok, []).append(i)
        self.token_list = sorted(tokens)
        self.token_rows = [tokens[t] for t in self.token_list]

    def find_words(self, words: list[str]) -> list[int]:
        """Rows whose label has a word starting with each query word (a sorted-token index, no scan)."""
        import bisect

        if not hasattr(self, "token_list"):
            self._build_tokens()
        result: set[int] | None = None
        for w in words:
            rows: set[int] = set()
            for part in _TOKEN_RE.findall(w) or [w]:
                lo = bisect.bisect_left(self.token_list, part)
                hi = bisect.bisect_left(self.token_list, part + "\uffff")
                part_rows = set().union(*self.token_rows[lo:hi]) if hi > lo else set()
                rows = part_rows if not rows else rows & part_rows
                if not rows:
                    break
            result = rows if result is None else result & rows
            if not result:
                break
        return sorted(result or ())


def resolve_database(database: str, context=None) -> str:
    """The `database:` value after the plugins' resolve_database hook (`demo:` -> the demo cohort's file)."""
    from clinseek.plugins import resolve_database as resolve

    return resolve(database, "ehr", context)


def _postgres_answers(dsn: str, timeout_s: int = 3) -> str | None:
    """None when a PostgreSQL server accepts this DSN within the timeout, else why not."""
    try:
        import psycopg
    except ImportError:
        return "a PostgreSQL DSN needs psycopg (pip install 'psycopg[binary]')"
    try:
        psycopg.connect(dsn, connect_timeout=timeout_s).close()
    except psycopg.Error as exc:
        return f"cannot connect to PostgreSQL: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}"
    return None


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


def _fill(sql: str, literals: dict[str, str] | None, dialect: str, trusted: bool) -> str:
    if not literals:
        return sql
    if not trusted:
        raise ValueError("literals are for the tools' own (trusted) SQL")
    for placeholder, value in literals.items():
        sql = sql.replace(_literal(placeholder, dialect), _literal(value, dialect))
    return sql


def _literal(value: str, dialect: str) -> str:
    from sqlglot import exp

    return exp.Literal.string(value).sql(dialect=dialect)


def _day(text: str | None, what: str):
    if text is None or str(text).strip() == "":
        return None
    try:
        return datetime.fromisoformat(str(text).strip()[:10])
    except ValueError:
        raise ToolError(f"{what} must be a date like 2180-05-06, got {text!r}") from None


def _bound(text: str, max_chars: int) -> str:
    from clinseek.toolsets import bound_text

    return bound_text(text, max_chars)[0]


__all__ = ["EhrToolset", "EhrConfig", "resolve_database"]
