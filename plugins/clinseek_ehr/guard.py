"""The SQL guard: accept exactly one read-only SELECT over the episode's tables, and rewrite it so every table
reference reads the episode's scoped subquery (bound patient, rows known by the cutoff, future columns masked).

The model writes DuckDB SQL. `check_query` parses it with sqlglot, refuses anything that is not a plain query
(writes, DDL, several statements, SET/PRAGMA/ATTACH/COPY/INSTALL/LOAD/CALL...), table functions, file/network and
catalogue access, schema-qualified names, and names that are not visible tables; every refusal says why and what to
do instead. `compose` prepends the scoped CTEs (named like the tables) and generates the backend's dialect.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import sqlglot
from sqlglot import exp

from clinseek_ehr.sqlpolicy import check_function, check_type, function_name, refuse

MAX_QUERY_CHARS = 20_000

# Statement and clause kinds that are never part of a read-only query.
_FORBIDDEN_NODES = tuple(getattr(exp, n) for n in (
    "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "Command", "Pragma", "Set", "Copy", "Attach",
    "Detach", "Install", "Use", "Transaction", "Commit", "Rollback", "Into", "LoadData", "Summarize", "Describe",
    "Show", "Kill", "Export", "Grant", "Revoke", "TruncateTable", "Analyze", "Refresh", "Cache", "Uncache",
    "Declare", "Comment", "Lock", "Placeholder", "Parameter") if hasattr(exp, n))

# Catalogue and system names a model might try as if they were tables.
_CATALOG_HINT = re.compile(r"^(information_schema|pg_\w*|duckdb_\w*|sqlite_\w*|pragma_\w*|system|temp|main|memory|"
                           r"clinseek_\w*)$", re.IGNORECASE)


@dataclass
class CheckedQuery:
    """A validated query: its AST (table names canonical) and the visible tables it reads."""

    ast: exp.Expression
    tables: set[str]


def check_query(sql: str, allowed: dict[str, object], read_dialect: str = "duckdb",
                reserved: frozenset[str] = frozenset()) -> CheckedQuery:
    """Parse and validate the model's SQL; raise ToolError with an actionable reason when refused.

    `allowed` maps visible table names (lower case) to anything; only these names may be read. `reserved`: every
    other relation name the database has (hidden tables); a WITH name may not take one of them either.
    """
    available = ", ".join(sorted(allowed))
    if not isinstance(sql, str) or not sql.strip():
        raise refuse("the query is empty", "Write one SELECT statement.")
    if len(sql) > MAX_QUERY_CHARS:
        raise refuse(f"the query is {len(sql)} characters long (limit {MAX_QUERY_CHARS})", "Write a shorter query.")
    try:
        statements = [s for s in sqlglot.parse(sql, read=read_dialect) if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0][:300]
        raise refuse(f"it does not parse as DuckDB SQL ({first})", "Fix the syntax; one SELECT statement.") from None
    except Exception as exc:  # noqa: BLE001 - sqlglot raises assorted errors on odd input
        raise refuse(f"it does not parse as DuckDB SQL ({type(exc).__name__})", "Write one plain SELECT.") from None
    if len(statements) != 1:
        raise refuse(f"found {len(statements)} statements; exactly one is allowed",
                     "Send a single SELECT (no ';' separated statements).")
    ast = statements[0]
    if not isinstance(ast, exp.Query):
        kind = ast.key.upper() if isinstance(ast, exp.Expression) else type(ast).__name__
        raise refuse(f"only SELECT queries are allowed (got {kind})", "Rewrite it as one SELECT (WITH, UNION allowed).")

    for node in ast.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise refuse(f"{node.key.upper()} is not allowed; the database is read-only",
                         "Only one SELECT over the listed tables is allowed.")
        if isinstance(node, exp.Func) and not isinstance(node.parent, exp.Table):
            check_function(node, available)
        elif isinstance(node, exp.DataType):
            check_type(node)

    _check_cte_names(ast, allowed, reserved)
    used: set[str] = set()
    for table in _table_references(ast):
        _check_table(table, allowed, used, available)

    # PostgreSQL (before 16) needs an alias on every derived table; DuckDB does not mind one.
    for n, sub in enumerate(list(ast.find_all(exp.Subquery))):
        if isinstance(sub.parent, (exp.From, exp.Join)) and not sub.alias:
            sub.set("alias", exp.TableAlias(this=exp.to_identifier(f"_q{n}")))
    return CheckedQuery(ast=ast, tables=used)


def _check_cte_names(ast: exp.Expression, allowed, reserved) -> None:
    """A WITH name may shadow nothing: no table, catalogue or system name, no relation of the database, no other
    WITH name anywhere in the query. Then a name means the same relation to the guard, sqlglot and the database."""
    seen: set[str] = set()
    for cte in ast.find_all(exp.CTE):
        name = cte.alias_or_name
        low = name.lower()
        if low in allowed:
            raise refuse(f"the WITH name {name!r} is also a table name",
                         f"Give your WITH query a different name (e.g. my_{low}).")
        if _CATALOG_HINT.match(low) or low in reserved:
            raise refuse(f"the WITH name {name!r} is a catalogue or database name",
                         f"Give your WITH query a different name (e.g. my_{low.strip('_')}).")
        if low in seen:
            raise refuse(f"the WITH name {name!r} is defined twice", "Give each WITH query its own name.")
        seen.add(low)


def _table_references(ast: exp.Expression) -> list[exp.Table]:
    """Every table reference that does not resolve to a WITH query visible in its own scope (sqlglot's scope
    resolution, per scope). Fails closed: a query whose scopes cannot be built, or a table node no scope covers,
    is refused."""
    from sqlglot.optimizer.scope import traverse_scope

    try:
        scopes = list(traverse_scope(ast))
    except Exception as exc:  # noqa: BLE001 - sqlglot raises OptimizeError and others on odd queries
        raise refuse(f"its table references cannot be resolved ({type(exc).__name__})",
                     "Simplify the query: name each table and WITH query once.") from None
    covered: set[int] = set()
    refs: list[exp.Table] = []
    for scope in scopes:
        for table in scope.tables:
            covered.add(id(table))
            is_cte = (isinstance(table.this, exp.Identifier) and not table.args.get("db")
                      and not table.args.get("catalog") and table.name in scope.cte_sources)
            if not is_cte:
                refs.append(table)
    for table in ast.find_all(exp.Table):
        if id(table) not in covered:
            raise refuse(f"the table reference {table.sql(dialect='duckdb')!r} is not in a plain FROM/JOIN position",
                         "Name tables in FROM and JOIN clauses.")
    return refs


def _check_table(table: exp.Table, allowed, used, available) -> None:
    this = table.this
    if not isinstance(this, exp.Identifier):
        what = function_name(this) if isinstance(this, exp.Func) else this.sql() if this is not None else "?"
        raise refuse(f"table functions such as {what}() are not allowed",
                     f"Read the tables by name: {available}.")
    name = this.name
    if table.args.get("db") or table.args.get("catalog"):
        raise refuse(f"schema-qualified name {table.sql(dialect='duckdb')!r} is not allowed",
                     f"Write the bare table name (e.g. {name.lower()}); available tables: {available}.")
    low = name.lower()
    if low not in allowed:
        if _CATALOG_HINT.match(low):
            raise refuse(f"catalogue and system tables ({name}) are not available",
                         f"Use ehr_tables / ehr_describe to see the schema; available tables: {available}.")
        if "." in name or "/" in name or ":" in name:
            raise refuse(f"{name!r} looks like a file or URL; files cannot be read",
                         f"Available tables: {available}.")
        raise refuse(f"table {name} is not available", f"Available tables: {available}.")
    used.add(low)
    alias = table.args.get("alias")
    table.set("this", exp.to_identifier(low))
    if alias is None and name != low:
        # Keep the model's spelling usable as a qualifier (e.g. "LabEvents".valuenum).
        table.set("alias", exp.TableAlias(this=exp.to_identifier(name, quoted=this.quoted)))


@dataclass(frozen=True)
class Prepared:
    """A checked query rendered in a dialect, waiting for an episode's scoped subqueries (see `compose`)."""

    tables: tuple[str, ...]
    own_ctes: tuple[str, ...]
    body: str
    recursive: bool


def prepare(checked: CheckedQuery, dialect: str) -> Prepared:
    ast = checked.ast
    own = ast.args.get("with_")
    own_ctes: tuple[str, ...] = ()
    if own is not None:
        body = ast.copy()
        body.set("with_", None)
        own_ctes = tuple(cte.sql(dialect=dialect, comments=False) for cte in own.expressions)
    else:
        body = ast
    # Comments are dropped: nothing of the model's text reaches the database except the parsed query itself.
    return Prepared(tables=tuple(sorted(checked.tables)), own_ctes=own_ctes,
                    body=body.sql(dialect=dialect, comments=False),
                    recursive=bool(own and own.args.get("recursive")))


@lru_cache(maxsize=4096)
def prepare_query(sql: str, allowed: frozenset, dialect: str, reserved: frozenset = frozenset()) -> Prepared:
    """check_query + prepare, cached by query text: episodes differ only in their scoped subqueries, so a query
    text is parsed, checked and transpiled once per run. A refusal raises every time (it is not cached)."""
    return prepare(check_query(sql, dict.fromkeys(allowed), reserved=reserved), dialect)


def compose(prepared: "Prepared | CheckedQuery", scoped: dict[str, str], dialect: str) -> str:
    """The final SQL: scoped CTEs for the tables read, then the model's query, in `dialect`. A table missing from
    `scoped` is left to resolve by its bare name (an episode's snapshot copy; on the shared connection a bare name
    resolves to nothing)."""
    if isinstance(prepared, CheckedQuery):
        prepared = prepare(prepared, dialect)
    parts = [f"{_quote(t, dialect)} AS ({scoped[t]})" for t in prepared.tables if t in scoped]
    parts += prepared.own_ctes
    head = ("WITH RECURSIVE " if prepared.recursive else "WITH ") + ", ".join(parts) + " " if parts else ""
    return head + prepared.body


@lru_cache(maxsize=1024)
def _quote(name: str, dialect: str) -> str:
    return exp.to_identifier(name).sql(dialect=dialect)


@lru_cache(maxsize=4096)
def prepare_trusted(sql: str, tables: frozenset, dialect: str) -> Prepared:
    """The tools' own SQL (trusted): every visible table it names is scoped like the model's."""
    ast = sqlglot.parse_one(sql, read="duckdb")
    used = {t.name.lower() for t in ast.find_all(exp.Table) if not t.args.get("db") and t.name.lower() in tables}
    return prepare(CheckedQuery(ast=ast, tables=used), dialect)
