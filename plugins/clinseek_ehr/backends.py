"""Database backends: DuckDB (default) and PostgreSQL. Each opens the data read-only, runs one statement with a
time limit, and fetches at most max_rows (+ a bounded count of the rows left out).

DuckDB: an in-memory connection ATTACHes the file READ_ONLY under an internal catalog name, then disables external
access and locks the configuration. Unqualified names therefore resolve to the empty in-memory catalog, so a table
the rewrite did not scope cannot be read even if the guard missed it; on an episode's own connection
(`DuckDbSession`) they resolve to that episode's scoped copies and nothing else. PostgreSQL: a small pool of
connections in read-only transactions, a statement_timeout, and a search_path pointing at no schema for the same
reason.
"""
from __future__ import annotations

import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp

from clinseek.errors import ToolError, UserError

SRC = "clinseek_src"
COUNT_CAP = 100_000   # rows counted beyond max_rows before saying "more than N"


class QueryTimeout(ToolError):
    """A statement stopped at the time limit."""


class Watchdog:
    """One timer thread for every statement time limit (a thread per query would cost about a millisecond)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._jobs: dict[int, tuple[float, Any]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self._wake_at = float("inf")   # when the timer thread wakes next; wake it earlier only when needed

    def start(self, timeout_s: float, fire) -> int:
        import time

        with self._cond:
            self._next += 1
            deadline = time.monotonic() + timeout_s
            self._jobs[self._next] = (deadline, fire)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="clinseek-ehr-watchdog", daemon=True)
                self._thread.start()
            if deadline < self._wake_at:
                self._cond.notify()
            return self._next

    def cancel(self, token: int) -> None:
        with self._cond:
            self._jobs.pop(token, None)

    def _loop(self) -> None:
        import time

        with self._cond:
            while True:
                now = time.monotonic()
                due = [k for k, (t, _) in self._jobs.items() if t <= now]
                for k in due:
                    _, fire = self._jobs.pop(k)
                    try:
                        fire()
                    except Exception:  # noqa: BLE001 - a failed interrupt must not stop the watchdog
                        pass
                self._wake_at = min((t for t, _ in self._jobs.values()), default=now + 60)
                self._cond.wait(timeout=max(0.005, self._wake_at - now))


WATCHDOG = Watchdog()


def fetch_bounded(cur, max_rows: int, count_more: bool) -> tuple[list, int, bool]:
    """At most max_rows rows, plus how many more there were (counted up to COUNT_CAP; `capped` past that, or when
    counting is off). Works on any DB-API cursor, so both backends report cut output the same way."""
    rows = cur.fetchmany(max_rows + 1)
    if len(rows) <= max_rows:
        return rows, 0, False
    rows, more = rows[:max_rows], 1
    if not count_more:
        return rows, more, True
    while more < COUNT_CAP:
        chunk = cur.fetchmany(min(10_000, COUNT_CAP - more))
        if not chunk:
            return rows, more, False
        more += len(chunk)
    return rows, more, bool(cur.fetchmany(1))


@dataclass
class Result:
    columns: list[str]
    types: list[str]
    rows: list[tuple]
    more: int = 0            # rows not shown
    more_capped: bool = False  # True: at least `more` rows not shown


class DuckDbBackend:
    dialect = "duckdb"

    def __init__(self, path: str | Path, memory_limit: str = "2GB", threads: int | None = None):
        self.path = Path(path)
        self.memory_limit = memory_limit
        self.threads = threads
        self.con = None
        self._cursors: queue.Queue = queue.Queue()

    def open(self) -> None:
        import duckdb

        if not self.path.exists():
            raise UserError(f"EHR database not found: {self.path}", where="tools.ehr.with.database",
                            hint="point `database` at a DuckDB file, a postgresql:// DSN, or use demo:")
        con = duckdb.connect(":memory:")
        try:
            lit = exp.Literal.string(str(self.path)).sql()
            con.execute(f"ATTACH {lit} AS {SRC} (READ_ONLY)")
        except duckdb.Error as exc:
            con.close()
            raise UserError(f"cannot open {self.path} as a DuckDB database: {str(exc).splitlines()[0]}",
                            where="tools.ehr.with.database") from None
        con.execute("SET enable_external_access = false")
        con.execute("SET python_enable_replacements = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute(f"SET memory_limit = '{self.memory_limit}'")
        if self.threads:
            con.execute(f"SET threads = {int(self.threads)}")
        try:
            # A scoped query reads one patient's rows; late materialization (a rowid semi-join for Top-N) costs
            # more than it saves at that size (bench/bench_ehr.py: 1.9 -> 1.4 ms for a Top-N).
            con.execute("SET disabled_optimizers = 'late_materialization'")
        except duckdb.Error:
            pass   # a DuckDB without that optimizer
        con.execute("SET lock_configuration = true")
        self.con = con

    def close(self) -> None:
        while not self._cursors.empty():
            self._cursors.get_nowait().close()
        if self.con is not None:
            self.con.close()
            self.con = None

    def table_columns(self) -> dict[str, list[tuple[str, str]]]:
        rows = self.con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            f"WHERE table_catalog = '{SRC}' AND table_schema = 'main' ORDER BY table_name, ordinal_position").fetchall()
        out: dict[str, list[tuple[str, str]]] = {}
        for t, c, ty in rows:
            out.setdefault(t, []).append((c, ty))
        return out

    def base_name(self, table: str, alias: str | None = None) -> exp.Table:
        return exp.Table(this=exp.to_identifier(table), db=exp.to_identifier("main"),
                         catalog=exp.to_identifier(SRC),
                         alias=exp.TableAlias(this=exp.to_identifier(alias)) if alias else None)

    def session(self) -> "DuckDbSession":
        return DuckDbSession(self)

    def run(self, sql: str, max_rows: int, timeout_s: float, count_more: bool = True,
            session: "DuckDbSession | None" = None) -> Result:
        import duckdb

        cur = session.cursor if session is not None else self._cursor()
        timed_out = threading.Event()
        token = WATCHDOG.start(timeout_s, lambda: (timed_out.set(), cur.interrupt()))
        ok = False
        try:
            cur.execute(sql)
            columns = [d[0] for d in cur.description]
            types = [str(d[1]) for d in cur.description]
            rows, more, capped = fetch_bounded(cur, max_rows, count_more)
            ok = True
            return Result(columns, types, rows, more, capped)
        except duckdb.InterruptException:
            if timed_out.is_set():
                raise QueryTimeout(f"query stopped after the {timeout_s:g} s time limit; "
                                   "filter with WHERE, aggregate, or add LIMIT") from None
            raise
        except duckdb.Error as exc:
            raise ToolError(f"query failed: {clean_error(str(exc))}") from None
        finally:
            WATCHDOG.cancel(token)
            if session is not None:
                if timed_out.is_set():
                    session.reset()   # an interrupted connection is not trusted again
            else:
                self._release(cur, reuse=ok and not timed_out.is_set())

    # Cursors are reused: creating one per call costs more than a small query.
    def _cursor(self):
        try:
            return self._cursors.get_nowait()
        except queue.Empty:
            return self.con.cursor()

    def _release(self, cur, reuse: bool) -> None:
        if reuse and self._cursors.qsize() < 16:
            self._cursors.put(cur)
        else:
            cur.close()


class DuckDbSession:
    """One episode's own DuckDB connection. Each patient table the episode reads is copied once, already scoped
    (patient, cutoff, masks), into a TEMP table of this connection named like the table, so the episode's queries
    read it by its bare name: a few hundred rows instead of filtering the file again, and no CTE to bind. Temporary
    tables belong to their connection: no other connection (episode) can see them, and closing it drops them.
    """

    def __init__(self, backend: DuckDbBackend):
        self.backend = backend
        self.lock = threading.Lock()          # tool calls of one turn run in threads; one connection, one query
        self.cursor = backend.con.cursor()
        self.tables: set[str] = set()         # tables copied so far
        self.uncopied: set[str] = set()       # tables whose copy failed: read through their scoped subquery

    def ensure(self, table: str, scoped_sql: str, timeout_s: float) -> bool:
        """Copy `table` (its scoped subquery) on first use; call with `lock` held. False when the copy failed (say,
        out of memory for a huge record): the caller then reads the table through its scoped subquery."""
        if table in self.uncopied:
            return False
        if table not in self.tables:
            name = exp.to_identifier(table).sql(dialect="duckdb")
            try:
                self.backend.run(f"CREATE TEMP TABLE {name} AS {scoped_sql}", 0, timeout_s, False, self)
            except QueryTimeout:
                raise
            except ToolError:
                self.uncopied.add(table)
                return False
            self.tables.add(table)
        return True

    def reset(self) -> None:
        self.tables, self.uncopied = set(), set()
        try:
            self.cursor.close()
        finally:
            self.cursor = self.backend.con.cursor()

    def close(self) -> None:
        self.tables = set()
        self.cursor.close()


class PostgresBackend:
    """PostgreSQL: the same model SQL, transpiled to PostgreSQL by sqlglot."""

    dialect = "postgres"

    def __init__(self, dsn: str, schema: str = "public", pool_size: int = 4):
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        self.pool: queue.Queue | None = None
        self._all: list[Any] = []

    def _connect(self, timeout_s: float | None = None):
        import psycopg

        con = psycopg.connect(self.dsn, autocommit=False)
        with con.cursor() as cur:
            cur.execute("SET default_transaction_read_only = on")
            # An unqualified name must resolve to nothing: point search_path at a schema that does not exist.
            cur.execute("SET search_path = clinseek_no_schema")
        con.commit()
        return con

    def open(self) -> None:
        import psycopg

        try:
            self._all = [self._connect() for _ in range(self.pool_size)]
        except psycopg.Error as exc:
            raise UserError(f"cannot connect to PostgreSQL: {str(exc).splitlines()[0]}",
                            where="tools.ehr.with.database", hint="check the DSN, the server and the password") from None
        self.pool = queue.Queue()
        for c in self._all:
            self.pool.put(c)

    def close(self) -> None:
        for c in self._all:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self._all = []
        self.pool = None

    def table_columns(self) -> dict[str, list[tuple[str, str]]]:
        con = self.pool.get()
        try:
            with con.cursor() as cur:
                cur.execute("SELECT table_name, column_name, upper(data_type) FROM information_schema.columns "
                            "WHERE table_schema = %s ORDER BY table_name, ordinal_position", (self.schema,))
                rows = cur.fetchall()
            con.rollback()
        finally:
            self.pool.put(con)
        out: dict[str, list[tuple[str, str]]] = {}
        for t, c, ty in rows:
            out.setdefault(t, []).append((c, _PG_NAMES.get(ty, ty)))
        return out

    def base_name(self, table: str, alias: str | None = None) -> exp.Table:
        return exp.Table(this=exp.to_identifier(table), db=exp.to_identifier(self.schema),
                         alias=exp.TableAlias(this=exp.to_identifier(alias)) if alias else None)

    def session(self) -> None:
        return None   # every query is scoped on the server; no per-episode snapshot

    def run(self, sql: str, max_rows: int, timeout_s: float, count_more: bool = True, session=None) -> Result:
        import psycopg

        con = self.pool.get()
        try:
            with con.cursor() as setup:
                setup.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            # A server-side cursor: rows stream in as fetched, so a huge result never lands in client memory.
            with con.cursor(name="clinseek_ehr") as cur:
                try:
                    cur.execute(sql)
                    columns = [d.name for d in cur.description]
                    types = [_pg_type(d.type_code) for d in cur.description]
                    rows, more, capped = fetch_bounded(cur, max_rows, count_more)
                except psycopg.errors.QueryCanceled:
                    raise QueryTimeout(f"query stopped after the {timeout_s:g} s time limit; "
                                       "filter with WHERE, aggregate, or add LIMIT") from None
                except psycopg.Error as exc:
                    raise ToolError(f"query failed: {clean_error(str(exc))}") from None
                return Result(columns, types, [tuple(r) for r in rows], more, capped)
        finally:
            try:
                con.rollback()
            except Exception:  # noqa: BLE001 - a broken connection is replaced
                try:
                    con.close()
                except Exception:  # noqa: BLE001
                    pass
                con = self._connect()
            self.pool.put(con)


_PG_TYPES = {16: "BOOLEAN", 20: "BIGINT", 21: "SMALLINT", 23: "INTEGER", 25: "VARCHAR", 700: "REAL",
             701: "DOUBLE", 1043: "VARCHAR", 1082: "DATE", 1114: "TIMESTAMP", 1184: "TIMESTAMP WITH TIME ZONE",
             1700: "DECIMAL"}


# PostgreSQL type names as DuckDB spells them, so both backends describe tables alike.
_PG_NAMES = {"TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP", "DOUBLE PRECISION": "DOUBLE", "TEXT": "VARCHAR",
             "CHARACTER VARYING": "VARCHAR", "CHARACTER": "VARCHAR", "NUMERIC": "DECIMAL",
             "TIMESTAMP WITH TIME ZONE": "TIMESTAMP WITH TIME ZONE"}


def _pg_type(oid: int) -> str:
    return _PG_TYPES.get(oid, "OTHER")


# Errors raised while evaluating an expression on a row can quote the row's value. The optimizer may evaluate the
# model's expressions before the scoping filters on some rows, so such messages could quote a row the episode may
# not see: their quoted parts and numbers are redacted.
_DATA_ERROR = re.compile(r"conversion error|invalid input|out of range|overflow|invalid .*syntax|value too long|"
                         r"could not convert|invalid .* value|malformed|cannot be cast", re.IGNORECASE)


def clean_error(text: str) -> str:
    """The database's message without internal names, the expanded query, or (for data errors) data values."""
    text = text.split("\nLINE", 1)[0].split("\n\nLINE", 1)[0]
    text = re.sub(r"Did you mean[^\n]*", "", text)
    text = text.replace(f"{SRC}.main.", "").replace(f"{SRC}.", "").replace("clinseek_no_schema", "")
    if _DATA_ERROR.search(text):
        text = re.sub(r"'(?:[^']|'')*'", "'…'", text)
        text = re.sub(r'"(?:[^"]|"")*"', '"…"', text)
        text = re.sub(r"(?<![A-Za-z_])-?\d+(?:\.\d+)?", "#", text)
        text += " (values are not shown in data errors; use TRY_CAST to skip unconvertible values)"
    text = " ".join(text.split())
    return text[:400]


def open_backend(database: str, base_dir: Path | None, memory_limit: str, pool_size: int, schema: str,
                 threads: int | None = None):
    if database.startswith(("postgresql://", "postgres://")) or "dbname=" in database:
        return PostgresBackend(database, schema=schema or "public", pool_size=pool_size)
    path = Path(database).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return DuckDbBackend(path, memory_limit=memory_limit, threads=threads)
