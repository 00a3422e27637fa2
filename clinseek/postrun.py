"""After a run: scoring, the HTML report and, in trajectory mode, the exports the recipe asks for."""
from __future__ import annotations

from typing import Any, Iterator


def finish_run(assembly: Any, run: Any) -> Iterator[str]:
    recipe = assembly.recipe
    from clinseek.scoring import score_run

    scores = score_run(run.path)
    overall = scores.get("overall", {})
    if overall:
        yield f"score: {_fmt_overall(overall)} (scores.json)"
    if recipe.output.report:
        from clinseek.report import write_report

        yield f"report: {write_report(run.path)}"
    if recipe.output.mode == "trajectories":
        from clinseek.exporters import export_run
        from clinseek.exporters.options import ExportOptions

        options = ExportOptions.model_validate(recipe.output.export)
        for fmt in options.formats:
            paths = export_run(run.path, fmt, run.path / "export" / fmt, options=options)
            yield f"export {fmt}: {', '.join(str(p) for p in paths)}"


def _fmt_overall(overall: dict) -> str:
    keys = [k for k in ("f1", "exact_match", "accuracy") if k in overall]
    return ", ".join(f"{k} {overall[k]:.3f}" for k in keys if isinstance(overall[k], (int, float)))
