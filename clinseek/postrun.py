"""After a run: scoring, the HTML report and, in trajectory mode, the exports the recipe asks for."""
from __future__ import annotations

from typing import Any, Iterator


def finish_run(assembly: Any, run: Any) -> Iterator[str]:
    recipe = assembly.recipe
    from clinseek.scoring import NothingScorable, score_run

    try:
        scores = score_run(run.path, scorers=assembly.scorers)
    except NothingScorable as exc:  # the run's exit status and summary say why; the report shows the reasons
        scores = {}
        yield f"score: none ({exc.message})"
    overall = scores.get("overall", {})
    if overall:
        yield f"score: {_fmt_overall(overall)} ({run.path / 'scores.json'})"
    if recipe.output.report:
        from clinseek.report import write_report

        yield f"report: {write_report(run.path)}"
    if recipe.output.mode == "trajectories":
        from clinseek.exporters import export_run

        options = export_options(assembly)
        summary = export_run(run.path, options=options)
        stats = summary["stats"]
        for fmt, paths in summary["formats"].items():
            yield f"export {fmt}: {', '.join(paths)}"
        yield f"export kept {stats.get('kept', 0)} of {stats.get('seen', 0)} trajectories ({summary['out']})"


def export_options(assembly: Any):
    """The recipe's output.export block, with `out` resolved against the recipe's folder."""
    from clinseek.exporters.options import ExportOptions

    data = dict(assembly.recipe.output.export)
    if data.get("out"):
        data["out"] = str(assembly.loaded.resolve_path(data["out"]))
    return ExportOptions.model_validate(data)


def _fmt_overall(overall: dict) -> str:
    keys = [k for k in ("f1", "exact_match", "yes_no_accuracy") if isinstance(overall.get(k), (int, float))]
    return ", ".join(f"{k} {overall[k]:.3f}" for k in keys)
