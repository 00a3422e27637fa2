"""The response cache: a SQLite file shared by every provider.

The key is a sha256 over everything that decides a reply: provider, base URL, model, messages, tool schemas,
sampling parameters and the run index (so run 2 of a task is not served run 1's reply). Changing any of them
misses. A hit comes back with `cached=True` and the usage of the original call, so cost accounting can tell them
apart. Several threads, event loops and processes may share one file (WAL mode, a lock per connection).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from clinseek.hosts.base import HostResponse, ToolCall, Usage
from clinseek.paths import default_cache_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT,
    created_at REAL NOT NULL,
    response TEXT NOT NULL
);
"""


def default_cache_path(context: Any = None) -> Path:
    """`<context.cache_dir>/responses.sqlite` when the engine gives one, else `$CLINSEEK_CACHE` or ~/.cache."""
    cache_dir = getattr(context, "cache_dir", None) if context is not None else None
    return Path(cache_dir) / "responses.sqlite" if cache_dir else default_cache_dir() / "responses.sqlite"


def resolve_cache_path(setting: bool | str | None, context: Any = None) -> Path | None:
    """The recipe's `host.cache`: false/None (off), true (the default file) or a path (relative to the recipe)."""
    if setting is None or setting is False:
        return None
    if setting is True:
        return default_cache_path(context)
    path = Path(os.path.expanduser(str(setting)))
    if not path.is_absolute():
        base = getattr(context, "recipe_dir", None) if context is not None else None
        path = Path(base or ".") / path
    return path


def cache_key(identity: dict[str, Any], messages: list[dict[str, Any]], tools: list[dict[str, Any]],
              run_index: int) -> str:
    """sha256 over a canonical JSON of what decides the reply."""
    payload = {"identity": identity, "messages": messages, "tools": tools, "run_index": run_index}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0,
                                     isolation_level=None)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError:  # e.g. a filesystem without shared memory; the default journal still works
            pass
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> HostResponse | None:
        with self._lock:
            row = self._conn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        response = response_from_json(row[0])
        response.cached = True
        return response

    def put(self, key: str, response: HostResponse, provider: str, model: str | None) -> None:
        text = response_to_json(response)
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO responses (key, provider, model, created_at, response) "
                               "VALUES (?, ?, ?, ?, ?)", (key, provider, model, time.time(), text))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            total, oldest, newest = self._conn.execute(
                "SELECT COUNT(*), MIN(created_at), MAX(created_at) FROM responses").fetchone()
            groups = self._conn.execute(
                "SELECT provider, model, COUNT(*) FROM responses GROUP BY provider, model "
                "ORDER BY COUNT(*) DESC").fetchall()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {"path": str(self.path), "entries": total, "bytes": size, "oldest": oldest, "newest": newest,
                "by_model": [{"provider": p, "model": m, "entries": n} for p, m, n in groups]}

    def clear(self, provider: str | None = None, model: str | None = None) -> int:
        where, args = [], []
        if provider:
            where.append("provider = ?")
            args.append(provider)
        if model:
            where.append("model = ?")
            args.append(model)
        sql = "DELETE FROM responses" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            removed = self._conn.execute(sql, args).rowcount
            if not where:
                self._conn.execute("VACUUM")
        return removed

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_OPEN: dict[Path, ResponseCache] = {}
_OPEN_LOCK = threading.Lock()


def open_cache(path: str | Path) -> ResponseCache:
    """One ResponseCache per file per process, shared by every host that uses it."""
    resolved = Path(path).expanduser().resolve()
    with _OPEN_LOCK:
        cache = _OPEN.get(resolved)
        if cache is None:
            cache = _OPEN[resolved] = ResponseCache(resolved)
        return cache


def response_to_json(r: HostResponse) -> str:
    return json.dumps({
        "content": r.content,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments, "raw_arguments": c.raw_arguments,
                        "error": c.error} for c in r.tool_calls],
        "usage": r.usage.as_dict(), "latency_s": r.latency_s, "response_id": r.response_id,
        "finish_reason": r.finish_reason, "provider_data": r.provider_data,
    }, ensure_ascii=False, default=str)


def response_from_json(text: str) -> HostResponse:
    d = json.loads(text)
    return HostResponse(content=d.get("content"),
                        tool_calls=[ToolCall(**c) for c in d.get("tool_calls") or []],
                        usage=Usage(**d.get("usage") or {}), latency_s=d.get("latency_s") or 0.0,
                        response_id=d.get("response_id"), finish_reason=d.get("finish_reason"),
                        provider_data=d.get("provider_data") or {})
