"""Copy a DuckDB EHR (e.g. the demo cohort) into a PostgreSQL schema, so both backends serve the same data.

Used by the PostgreSQL tests and by sites that want the demo on their server:
    python -m clinseek_ehr.pgload cohort.duckdb postgresql://user@host/db [schema]
Table and column names are lower-cased; tables are replaced.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

_TYPES = {"INTEGER": "integer", "BIGINT": "bigint", "SMALLINT": "smallint", "TINYINT": "smallint",
          "UINTEGER": "bigint", "USMALLINT": "integer", "UTINYINT": "smallint", "UBIGINT": "numeric",
          "HUGEINT": "numeric", "DOUBLE": "double precision", "FLOAT": "real", "REAL": "real", "VARCHAR": "text",
          "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP_S": "timestamp",
          "TIMESTAMP_MS": "timestamp", "TIMESTAMP_NS": "timestamp", "TIME": "time", "BLOB": "bytea",
          "TIMESTAMP WITH TIME ZONE": "timestamptz", "UUID": "uuid", "INTERVAL": "interval"}


def pg_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.startswith("DECIMAL"):
        return t.replace("DECIMAL", "numeric")
    return _TYPES.get(t, "text")


def load_duckdb_into_postgres(duckdb_path: str | Path, dsn: str, schema: str = "public",
                              tables: list[str] | None = None) -> dict[str, int]:
    """Copy every (or the named) table of `duckdb_path` into `schema`; returns table -> row count."""
    import duckdb
    import psycopg
    from psycopg import sql

    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", schema):
        raise ValueError(f"bad schema name {schema!r}")
    src = duckdb.connect(str(duckdb_path), read_only=True)
    counts: dict[str, int] = {}
    try:
        names = [r[0] for r in src.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        if tables is not None:
            names = [n for n in names if n.lower() in {t.lower() for t in tables}]
        with psycopg.connect(dsn, autocommit=False) as pg:
            with pg.cursor() as cur:
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                for name in names:
                    cols = src.execute(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position", [name]).fetchall()
                    target = sql.Identifier(schema, name.lower())
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
                    cur.execute(sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(c.lower()), sql.SQL(pg_type(t))) for c, t in cols)))
                    rel = src.execute(f'SELECT * FROM main."{name}"')
                    n = 0
                    with cur.copy(sql.SQL("COPY {} FROM STDIN").format(target)) as copy:
                        while True:
                            chunk = rel.fetchmany(5000)
                            if not chunk:
                                break
                            for row in chunk:
                                copy.write_row(row)
                            n += len(chunk)
                    counts[name.lower()] = n
                    cur.execute(sql.SQL("ANALYZE {}").format(target))
            pg.commit()
    finally:
        src.close()
    return counts


if __name__ == "__main__":  # pragma: no cover - a thin command line
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    for table, count in load_duckdb_into_postgres(sys.argv[1], sys.argv[2], *(sys.argv[3:4])).items():
        print(f"{table}: {count} rows")
