"""Where clinseek keeps its caches: one rule for the engine, the hosts' response cache and every plugin."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`$CLINSEEK_CACHE` (with `~` expanded) or `~/.cache/clinseek`. A run's RunContext.cache_dir starts here."""
    env = os.environ.get("CLINSEEK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clinseek"
