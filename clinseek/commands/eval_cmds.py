"""`clinseek score | report | export`: evaluation and distillation over finished run directories."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--reference", is_flag=True,
              help="RUN_DIR is a results file (or folder with results.jsonl) of the reference ClinSeekAgent "
                   "system: answers are read from each row's last finish call.")
@click.option("--benchmark", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="ClinSeek-Bench file giving label / task / task_type for reference rows that lack them.")
@click.option("--scorer", "scorer_names", multiple=True,
              help="Also run this registered scorer (repeatable); its means go under `extra` in scores.json.")
@click.option("--strict-reference", is_flag=True,
              help="Also print the reference script's own numbers (lower-case only, micro mean over the questions "
                   "with results) next to clinseek's, so a paper's number and ours can be set side by side.")
@click.option("--json", "as_json", is_flag=True, help="Print scores.json's summary instead of the table.")
@click.option("--no-write", is_flag=True, help="Print only; do not write scores.json.")
def score(run_dir, reference, benchmark, scorer_names, strict_reference, as_json, no_write):
    """Score a run: ClinSeek-Bench set precision / recall / F1 per task (runs averaged per question, questions
    per task), overall as the macro mean over tasks, per task_type, exact match and yes/no accuracy. Writes
    scores.json next to results.jsonl. A run with no episodes, or whose episodes all ended in error, has no
    score: exit 2, with the failure reasons."""
    from clinseek.scoring import format_table, score_run

    scorers = []
    if scorer_names:
        from clinseek.plugins import get_registry

        reg = get_registry()
        scorers = [reg.get("scorers", n, where="--scorer")() for n in scorer_names]
    result = score_run(run_dir, write=not no_write, reference=reference, benchmark=benchmark, scorers=scorers,
                       warn=lambda m: click.echo(f"warning: {m}", err=True), strict_reference=strict_reference)
    if as_json:
        click.echo(json.dumps({k: result[k] for k in ("overall", "per_task", "per_task_type", "counts", "errors",
                                                      "strict_reference")
                               if k in result}, indent=2))
    else:
        click.echo(format_table(result))
        for name, means in (result.get("extra") or {}).items():
            click.echo(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    if not no_write:
        target = run_dir if run_dir.is_dir() else run_dir.parent
        click.echo(f"wrote {target / 'scores.json'}", err=True)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the HTML file (default RUN_DIR/report.html).")
@click.option("--max-episodes", type=click.IntRange(min=0), default=None,
              help="At most this many episodes in the viewer (default 2000).")
def report(run_dir, out, max_episodes):
    """Write one self-contained HTML report of a run (no network needed to open it): scores per task and task
    type, usage, cost and latency, tool-call distribution, and a viewer for every episode."""
    from clinseek.report import write_report

    kwargs = {"max_episodes": max_episodes} if max_episodes is not None else {}
    click.echo(str(write_report(run_dir, out, warn=lambda m: click.echo(f"warning: {m}", err=True), **kwargs)))


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-f", "--format", "formats", multiple=True,
              help="openai | trl | sharegpt | hf, or a plugin exporter's name (repeatable; default openai).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default RUN_DIR/export).")
@click.option("--all-statuses", is_flag=True, help="Keep episodes that did not end with finish too.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None,
              help="Keep only episodes whose set F1 is at least this (1.0: correct-only distillation).")
@click.option("--min-turns", type=click.IntRange(min=0), default=None)
@click.option("--max-turns", type=click.IntRange(min=1), default=None)
@click.option("--no-dedupe", is_flag=True, help="Keep identical trajectories.")
@click.option("--drop-errors", is_flag=True, help="Drop episodes in which a tool call returned an error.")
@click.option("--provenance", type=click.Choice(["inline", "sidecar"]), default=None,
              help="inline: a provenance key per row (default); sidecar: provenance.jsonl beside the rows.")
@click.option("--hf-repo", default=None,
              help="With --format hf: push the dataset to this Hub repo. The rows hold patient data: only for "
                   "data you may publish.")
@click.option("--hf-token-env", default=None, help="Environment variable with the Hub token (default HF_TOKEN).")
def export(run_dir, formats, out, all_statuses, min_score, min_turns, max_turns, no_dedupe, drop_errors,
           provenance, hf_repo, hf_token_env):
    """Turn a run's trajectories into training data: OpenAI fine-tuning, TRL SFT, LLaMA-Factory ShareGPT, or a
    Hugging Face dataset."""
    from clinseek.exporters import export_run

    summary = export_run(run_dir, list(formats) or None, out,
                         completed_only=False if all_statuses else None, min_score=min_score,
                         min_turns=min_turns, max_turns=max_turns, dedupe=False if no_dedupe else None,
                         drop_errors=True if drop_errors else None, provenance=provenance, hf_repo=hf_repo,
                         hf_token_env=hf_token_env, warn=lambda m: click.echo(f"warning: {m}", err=True))
    stats = summary["stats"]
    dropped = ", ".join(f"{k[len('dropped_'):]} {v}" for k, v in sorted(stats.items()) if k.startswith("dropped_"))
    click.echo(f"kept {stats.get('kept', 0)} of {stats.get('seen', 0)} episodes"
               + (f" (dropped: {dropped})" if dropped else ""))
    for name, paths in summary["formats"].items():
        click.echo(f"{name}: {', '.join(paths)}")
