"""`export_run`: a run directory's trajectories -> the chosen training formats, through the filters."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from clinseek.errors import UserError
from clinseek.exporters.filters import filter_records
from clinseek.exporters.options import ExportOptions
from clinseek.runs import TRAJECTORIES


def _exporter_class(fmt: str) -> Any:
    # Built-in exporters are registered by the core plugin: one lookup for everyone, no privileged path.
    from clinseek.plugins import get_registry

    return get_registry().get("exporters", fmt, where="export format")


def export_run(run_dir: Path | str, fmt: str | list[str] | None = None, out: Path | str | None = None,
               options: ExportOptions | dict[str, Any] | None = None, warn: Any = None,
               **filters: Any) -> dict[str, Any]:
    """Export a run's trajectories.jsonl.

    `fmt` (one name or a list) overrides options.formats; `out` overrides options.out (default <run>/export);
    keyword `filters` override option fields (completed_only=False, min_score=1.0, ...). Returns a summary:
    {"formats": {name: [paths]}, "stats": {seen, kept, dropped_*}, "out": str}, also written to
    <out>/export_summary.json. Each episode's effective trajectory is exported (a retried episode's last
    attempt); torn or duplicated lines go to `warn`.
    """
    run_dir = Path(run_dir)
    base = options if isinstance(options, ExportOptions) else ExportOptions(**(options or {}))
    update = {k: v for k, v in filters.items() if v is not None}
    if fmt:
        update["formats"] = [fmt] if isinstance(fmt, str) else list(fmt)
    if out is not None:
        update["out"] = str(out)
    opts = ExportOptions(**{**base.model_dump(), **update})
    traj = run_dir / TRAJECTORIES
    if not traj.exists():
        raise UserError(f"no trajectories.jsonl in {run_dir}", hint="export needs a run directory written by "
                        "`clinseek apply`")
    classes = [(_exporter_class(f), f) for f in opts.formats]  # fail on an unknown format before writing
    out_dir = Path(opts.out) if opts.out else run_dir / "export"
    from clinseek.runs import effective_index, iter_effective

    records = iter_effective(traj, effective_index(traj, warn, "trajectory"))
    stats: Counter = Counter()
    kept = list(filter_records(records, opts, stats))
    written: dict[str, list[str]] = {}
    for cls, name in classes:
        exporter = cls(opts)
        sub = out_dir / name if len(classes) > 1 else out_dir
        written[name] = [str(p) for p in exporter.write(kept, sub)]
    summary = {"formats": written, "stats": dict(stats), "out": str(out_dir), "options": opts.model_dump()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "export_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
