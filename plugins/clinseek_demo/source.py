"""`tasks: {source: demo}`: the demo cohort's benchmark as a task source, built on first use."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from clinseek.errors import UserError
from clinseek.tasks import Task, TaskSource


class DemoTaskSource(TaskSource):
    """Yields the demo benchmark's tasks. Options: `patients`, `seed` (which demo cohort), `tasks` (a list of task
    names to keep), `limit` (at most this many tasks). Image paths are made absolute against the cohort folder."""

    name = "demo"

    def __init__(self, config: Any = None, context: Any = None):
        super().__init__(config, context)
        options = self.options
        self.opts = dict(options.get("with") or {}, **{k: v for k, v in options.items() if k != "with"})

    def _int(self, key: str, default: int) -> int:
        value = self.opts.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"tasks.{key} must be a positive integer, got {value!r}", where="tasks",
                            hint=f"for example `{key}: {default}`")
        return value

    def demo(self):
        from clinseek_demo.demo import DEFAULT_PATIENTS, DEFAULT_SEED, ensure_demo

        cache = getattr(self.context, "cache_dir", None)
        return ensure_demo(self._int("patients", DEFAULT_PATIENTS), self._int("seed", DEFAULT_SEED),
                           Path(cache) if cache else None, log=getattr(self.context, "info", None))

    def iter_tasks(self) -> Iterator[Task]:
        from clinseek_demo.benchmark import ALL_TASKS

        keep = self.opts.get("tasks")
        if keep is not None:
            keep = [keep] if isinstance(keep, str) else list(keep)
            unknown = set(keep) - set(ALL_TASKS)
            if unknown:
                raise UserError(f"unknown demo task(s) {sorted(unknown)}", where="tasks.tasks",
                                hint=f"choose from {', '.join(ALL_TASKS)}")
        limit = self.opts.get("limit")
        paths = self.demo()
        n = 0
        with paths.tasks.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if keep is not None and row["task"] not in keep:
                    continue
                if limit is not None and n >= limit:
                    return
                row["image_paths"] = [str(paths.root / p) for p in row.get("image_paths", [])]
                row["cohort_db"] = str(paths.db)
                n += 1
                yield Task.model_validate(row)
