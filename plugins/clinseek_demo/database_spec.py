"""`database: demo:` in toolset configs: the cached demo cohort, shared by every toolset that reads it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from clinseek.errors import UserError


def resolve_database(database: str, context: Any = None, *, toolset: str) -> str | None:
    """`demo:` or `demo:patients=N,seed=S` -> the demo cohort's DuckDB path (built on first use); else None."""
    if not database.startswith("demo:"):
        return None
    where = f"tools.{toolset}.with.database"
    opts: dict[str, int] = {}
    for part in filter(None, database[5:].split(",")):
        key, _, value = part.partition("=")
        if key.strip() not in ("patients", "seed") or not value.strip().isdigit():
            raise UserError(f"bad demo database spec {database!r}", where=where,
                            hint="write demo: or demo:patients=200,seed=0")
        opts[key.strip()] = int(value)
    try:
        from clinseek_demo.demo import ensure_demo
    except ImportError as exc:
        raise UserError(f"the demo cohort is not available in this installation ({exc})", where=where) from None
    cache_dir = getattr(context, "cache_dir", None)
    demo = ensure_demo(**opts, cache_dir=cache_dir, log=getattr(context, "info", None))
    return str(Path(demo.db))
