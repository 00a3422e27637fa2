"""`clinseek compare RUN_A RUN_B [RUN_C ...]`: the paired table of the paper (curated vs seeking, host vs host).

Per task, per task_type and overall: each run's F1, the difference to the first run with a paired bootstrap
interval, and the questions that flipped each way; tool use, tokens and cost per run. Runs over different task sets
are refused, naming what differs.
"""
from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from clinseek.errors import UserError
from clinseek.runs import MANIFEST


@dataclass
class RunSummary:
    name: str
    path: Path
    rows: list[dict[str, Any]]
    questions: dict[str, dict[str, Any]]  # qid -> per-question scores (clinseek.scoring)
    manifest: dict[str, Any]


def load_run(path: Path) -> RunSummary:
    from clinseek.scoring import load_run_rows, score_rows

    rows = load_run_rows(path, warn=lambda m: click.echo(f"warning: {m}", err=True))
    if not rows:
        raise UserError(f"{path} has no results yet", hint="run `clinseek apply` (or --resume) first")
    if all(r.get("status") == "error" for r in rows):  # no score, not a score of 0 (docs/scoring.md)
        raise UserError(f"every episode of {path} ended in error: it has no score to compare",
                        hint="fix the cause (its events.log says it), then `clinseek apply RECIPE --resume "
                             f"{path} --retry-errors`")
    scores = score_rows(rows)
    manifest_path = path / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    name = manifest.get("recipe", {}).get("name") or path.name
    return RunSummary(name=name, path=path, rows=rows, questions={q["qid"]: q for q in scores["per_question"]},
                      manifest=manifest)


def check_same_tasks(runs: list[RunSummary]) -> None:
    base = runs[0]
    for other in runs[1:]:
        only_a = sorted(set(base.questions) - set(other.questions))
        only_b = sorted(set(other.questions) - set(base.questions))
        problems = []
        if only_a:
            problems.append(f"{len(only_a)} question(s) only in {base.path.name} (e.g. {', '.join(only_a[:3])})")
        if only_b:
            problems.append(f"{len(only_b)} question(s) only in {other.path.name} (e.g. {', '.join(only_b[:3])})")
        relabelled = [q for q in set(base.questions) & set(other.questions)
                      if sorted(base.questions[q]["label"]) != sorted(other.questions[q]["label"])]
        if relabelled:
            problems.append(f"{len(relabelled)} question(s) with different labels (e.g. {sorted(relabelled)[0]})")
        if problems:
            raise UserError(f"{base.path.name} and {other.path.name} are not over the same tasks: "
                            + "; ".join(problems),
                            hint="compare runs of the same task file (use --resume to finish a partial run)")


def _tool_stats(run: RunSummary) -> dict[str, Any]:
    n = len(run.rows)
    counts: dict[str, int] = defaultdict(int)
    for r in run.rows:
        for tool, c in (r.get("tool_counts") or {}).items():
            counts[tool] += c
    total = sum(counts.values())
    usage = [r.get("usage") or {} for r in run.rows]
    costs = [r.get("cost_usd") for r in run.rows if r.get("cost_usd") is not None]
    return {
        "episodes": n,
        "calls_per_episode": total / n if n else 0.0,
        "tool_share": {t: c / total for t, c in sorted(counts.items(), key=lambda kv: -kv[1])} if total else {},
        "input_tokens": sum(u.get("input_tokens", 0) for u in usage),
        "output_tokens": sum(u.get("output_tokens", 0) for u in usage),
        "cost_usd": sum(costs) if costs else None,
        "completed": sum(1 for r in run.rows if r.get("status") == "completed"),
    }


def compare_runs(paths: list[Path], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    import numpy as np

    from clinseek.pairing import flips, paired_bootstrap

    if len(paths) < 2:
        raise UserError("compare needs at least two run directories")
    runs = [load_run(Path(p)) for p in paths]
    check_same_tasks(runs)
    base = runs[0]
    qids = sorted(base.questions)
    by_task: dict[str, list[str]] = defaultdict(list)
    by_type: dict[str, list[str]] = defaultdict(list)
    for q in qids:
        by_task[base.questions[q]["task"]].append(q)
        by_type[base.questions[q]["task_type"]].append(q)

    def f1s(run: RunSummary, ids: list[str]) -> np.ndarray:
        return np.array([run.questions[q]["f1"] for q in ids])

    def correct(run: RunSummary, ids: list[str]) -> np.ndarray:
        return np.array([run.questions[q]["exact_match"] >= 0.5 for q in ids])

    def row(label: str, groups: dict[str, list[str]], macro: bool) -> dict[str, Any]:
        ids = [q for g in groups.values() for q in g]
        scores = [float(np.mean([f1s(r, g).mean() for g in groups.values()])) if macro else
                  float(f1s(r, ids).mean()) for r in runs]
        diffs = []
        for r in runs[1:]:
            iv = paired_bootstrap({k: f1s(r, g) - f1s(base, g) for k, g in groups.items()}, n_boot=n_boot,
                                  seed=seed, macro=macro)
            worse, better = flips(correct(base, ids), correct(r, ids))
            diffs.append({"diff": iv.diff, "low": iv.low, "high": iv.high, "significant": iv.excludes_zero,
                          "flipped_to_wrong": worse, "flipped_to_right": better})
        return {"name": label, "questions": len(ids), "scores": scores, "diffs": diffs}

    tasks = [row(t, {t: ids}, macro=False) for t, ids in sorted(by_task.items())]
    types = []
    for tt, ids in sorted(by_type.items()):
        groups = {t: [q for q in ids if base.questions[q]["task"] == t] for t in by_task}
        types.append(row(tt, {k: v for k, v in groups.items() if v}, macro=False))
    overall = row("overall (macro over tasks)", dict(by_task), macro=True)
    return {"runs": [{"name": r.name, "path": str(r.path), "host": r.manifest.get("host", {}),
                      "evidence": r.manifest.get("recipe", {}).get("agent", {}).get("evidence", "seek"),
                      "tools": _tool_stats(r)} for r in runs],
            "tasks": tasks, "task_types": types, "overall": overall,
            "bootstrap": {"resamples": n_boot, "seed": seed, "interval": "95% percentile, paired, stratified by task"}}


def _label(i: int, run: dict[str, Any]) -> str:
    return f"{chr(65 + i)}: {run['name']}"


def to_markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    letters = [chr(65 + i) for i in range(len(runs))]
    lines = ["Runs:"]
    for i, r in enumerate(runs):
        lines.append(f"  {_label(i, r)} ({r['evidence']}, {r['host'].get('provider', '?')} "
                     f"{r['host'].get('model', '') or ''}) {r['path']}".rstrip())
    head = ["", "questions"] + [f"F1 {x}" for x in letters]
    for x in letters[1:]:
        head += [f"{x}-A [95% CI]", f"{x} flips -/+"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt_row(row: dict[str, Any], bold: bool = False) -> str:
        cells = [f"**{row['name']}**" if bold else row["name"], str(row["questions"])]
        cells += [f"{s:.3f}" for s in row["scores"]]
        for d in row["diffs"]:
            star = "*" if d["significant"] else ""
            cells += [f"{d['diff']:+.3f}{star} [{d['low']:+.3f}, {d['high']:+.3f}]",
                      f"{d['flipped_to_wrong']}/{d['flipped_to_right']}"]
        return "| " + " | ".join(cells) + " |"

    for row in result["tasks"]:
        lines.append(fmt_row(row))
    for row in result["task_types"]:
        lines.append(fmt_row({**row, "name": f"type: {row['name']}"}))
    lines.append(fmt_row(result["overall"], bold=True))
    lines += ["", "* the 95% interval excludes 0. flips -/+: questions right in A and wrong in this run / wrong "
                  "in A and right in this run (exact match).", "", "Tool use:",
              "| run | episodes | completed | calls/episode | top tools | input tokens | output tokens | cost USD |",
              "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs):
        t = r["tools"]
        top = ", ".join(f"{k} {v:.0%}" for k, v in list(t["tool_share"].items())[:4]) or "-"
        cost = f"{t['cost_usd']:.4f}" if t["cost_usd"] is not None else "-"
        lines.append(f"| {letters[i]} | {t['episodes']} | {t['completed']} | {t['calls_per_episode']:.2f} | {top} | "
                     f"{t['input_tokens']} | {t['output_tokens']} | {cost} |")
    return "\n".join(lines)


def to_html(result: dict[str, Any]) -> str:
    from clinseek.report.html import _asset

    md_rows = to_markdown(result).splitlines()
    body = []
    in_table = False
    for line in md_rows:
        if line.startswith("|---"):
            continue
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            tag = "th" if not in_table else "td"
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<{tag}>{html.escape(c).replace('**', '')}</{tag}>" for c in cells)
                        + "</tr>")
        else:
            if in_table:
                body.append("</table>")
                in_table = False
            if line.strip():
                body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>clinseek compare</title>"
            f"<style>{_asset('report.css')}</style></head><body><header><h1>clinseek compare</h1>"
            f"<div id='meta'>{html.escape(result['bootstrap']['interval'])}, "
            f"{result['bootstrap']['resamples']} resamples, seed {result['bootstrap']['seed']}</div></header>"
            f"<main>{''.join(body)}</main></body></html>")


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML page here.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the numbers as JSON here.")
@click.option("--resamples", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Paired bootstrap replicates behind each 95% interval of a difference to run A (questions "
                   "drawn with replacement, the same draw for both runs; the overall row is stratified by task). "
                   "More give steadier interval ends and take longer.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the bootstrap's random draws: the same seed gives the same intervals.")
def compare(runs, html_out, json_out, resamples, seed):
    """Compare runs over the same tasks: scores, paired bootstrap intervals, flips, tool use, tokens, cost.
    The first run is the baseline (A)."""
    result = compare_runs(list(runs), n_boot=resamples, seed=seed)
    click.echo(to_markdown(result))
    if html_out:
        html_out.write_text(to_html(result), encoding="utf-8")
        click.echo(f"\nhtml: {html_out}")
    if json_out:
        json_out.write_text(json.dumps(result, indent=2), encoding="utf-8")
