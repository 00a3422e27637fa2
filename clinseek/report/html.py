"""Build the report's data from a run directory and write the HTML file."""
from __future__ import annotations

import json
import statistics
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from clinseek.errors import UserError
from clinseek.scoring import error_summary, load_run_rows, score_rows, set_prf
from clinseek.runs import MANIFEST, RESULTS, SCORES

# The file must stay usable for thousands of episodes: the viewer holds at most this many, and each
# observation at most this many characters; the report says when it cut.
MAX_EPISODES = 2000
MAX_OBSERVATION_CHARS = 6000


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _cut(text: Any, limit: int) -> tuple[str, bool]:
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text, False
    return text[:limit] + f"\n... [report cut {len(text) - limit} of {len(text)} characters]", True


def _episode(traj: dict[str, Any], result: dict[str, Any] | None, obs_limit: int) -> dict[str, Any]:
    task = traj.get("task") or {}
    label = task.get("label") or (result or {}).get("label") or []
    answer = traj.get("answer") or []
    p, r, f1 = set_prf(answer, label)
    msgs = []
    cut = 0
    for m in traj.get("messages") or []:
        item = {"role": m.get("role"), "content": m.get("content")}
        if m.get("role") == "tool":
            item["content"], was_cut = _cut(m.get("content"), obs_limit)
            cut += was_cut
            item.update({"name": m.get("name"), "evidence_id": m.get("evidence_id"),
                         "truncated": bool(m.get("truncated")), "is_error": bool(m.get("is_error"))})
        if m.get("tool_calls"):
            item["tool_calls"] = [{"id": c.get("id"), "name": c.get("name"), "arguments": c.get("arguments")}
                                  for c in m["tool_calls"]]
        msgs.append(item)
    res = result or {}
    return {"qid": traj.get("qid"), "run_index": traj.get("run_index", 0), "task": task.get("task"),
            "task_type": task.get("task_type"), "question": task.get("question"), "answer": answer,
            "label": label, "status": traj.get("status"), "reason": traj.get("reason"), "f1": f1,
            "cited": traj.get("cited_evidence") or [], "evidence": traj.get("evidence") or {},
            "messages": msgs, "turns": res.get("turns"), "tool_calls": res.get("tool_calls"),
            "wall_s": (res.get("timings") or {}).get("wall_s"), "cost_usd": res.get("cost_usd"),
            "observations_cut": cut}


def build_report_data(run_dir: Path | str, *, max_episodes: int = MAX_EPISODES,
                      max_observation_chars: int = MAX_OBSERVATION_CHARS, warn: Any = None) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict. Problems found while reading the run (torn or
    duplicated lines, episodes without a trajectory) go to `warn` and into the report's banner."""
    from clinseek.runs import TRAJECTORIES, effective_index, iter_effective, key_of

    run_dir = Path(run_dir)
    if not (run_dir / RESULTS).exists():
        raise UserError(f"no results.jsonl in {run_dir}", hint="pass a run directory written by `clinseek apply`")
    warnings: list[str] = []

    def note(text: str) -> None:
        warnings.append(text)
        if warn:
            warn(text)

    results = load_run_rows(run_dir, warn=note)
    manifest = {}
    if (run_dir / MANIFEST).exists():
        manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    errors = error_summary(results, run_dir)
    scorable = bool(results) and errors["errors"] < len(results)
    scores_path = run_dir / SCORES
    # scores.json may be older than the results (a resumed or retried run scored before): then recompute.
    fresh = scores_path.exists() and scores_path.stat().st_mtime >= (run_dir / RESULTS).stat().st_mtime
    scores = json.loads(scores_path.read_text(encoding="utf-8")) if fresh else score_rows(results)
    if not scorable:  # no score rather than a score of 0 (see the banner)
        scores = {"overall": {}, "per_task": {}, "per_task_type": {}, "counts": scores.get("counts")}

    usage = Counter()
    for r in results:
        usage.update({k: v for k, v in (r.get("usage") or {}).items() if isinstance(v, (int, float))})
    costs = [r["cost_usd"] for r in results if isinstance(r.get("cost_usd"), (int, float))]
    timing: dict[str, Any] = {}
    for key in ("wall_s", "host_s", "tools_s"):
        xs = [float((r.get("timings") or {})[key]) for r in results if (r.get("timings") or {}).get(key) is not None]
        timing[key] = {"mean": statistics.fmean(xs) if xs else None, "p50": _pct(xs, 0.5), "p95": _pct(xs, 0.95),
                       "max": max(xs) if xs else None}
    tools = Counter()
    tools_by_task: dict[str, Counter] = {}
    for r in results:
        counts = r.get("tool_counts") or {}
        tools.update(counts)
        tools_by_task.setdefault(r.get("task") or "unknown", Counter()).update(counts)
    status = Counter(r.get("status") or "unknown" for r in results)

    by_key = {key_of(r): r for r in results}
    trajectories = effective_index(run_dir / TRAJECTORIES, note, "trajectory")
    missing = [k for k in by_key if k not in trajectories]
    if missing and (run_dir / TRAJECTORIES).exists():
        note(f"{len(missing)} episode(s) have a result but no trajectory (e.g. qid {missing[0][0]}, run "
             f"{missing[0][1]}); the viewer cannot show them")
    episodes = []
    for traj in iter_effective(run_dir / TRAJECTORIES, trajectories):
        if len(episodes) >= max_episodes:
            break
        episodes.append(_episode(traj, by_key.get(key_of(traj)), max_observation_chars))
    host = manifest.get("host") or (manifest.get("recipe") or {}).get("host") or {}
    return {
        "run": {"path": str(run_dir), "name": (manifest.get("recipe") or {}).get("name") or run_dir.name,
                "host": {k: host.get(k) for k in ("provider", "model") if host.get(k)},
                "recipe_sha256": manifest.get("recipe_sha256"),
                # the manifest's names; started_at / finished_at are what older sample runs wrote
                "started": manifest.get("started") or manifest.get("started_at"),
                "ended": manifest.get("ended") or manifest.get("finished_at"),
                "interrupted": bool(manifest.get("interrupted")),
                "clinseek_version": manifest.get("clinseek_version")},
        "problems": {"episodes": len(results), "errors": errors["errors"], "reasons": errors["reasons"],
                     "scorable": scorable, "retry_command": errors.get("retry_command"), "warnings": warnings},
        "scores": {k: scores.get(k) for k in ("overall", "per_task", "per_task_type", "counts")},
        "usage": dict(usage), "cost": {"total": sum(costs) if costs else None,
                                       "mean": statistics.fmean(costs) if costs else None,
                                       "priced_runs": len(costs)},
        "timing": timing, "status": dict(status), "tools": dict(tools.most_common()),
        "tools_by_task": {t: dict(c.most_common()) for t, c in sorted(tools_by_task.items())},
        "episodes": episodes, "episodes_total": len(trajectories), "episodes_shown": len(episodes),
        "limits": {"max_episodes": max_episodes, "max_observation_chars": max_observation_chars},
    }


def _asset(name: str) -> str:
    return resources.files("clinseek.report").joinpath(name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any]) -> str:
    # Jinja's tojson escapes <, >, & and ' as \u00XX, so no observation text can close the <script> element
    # that carries the data; the title is autoescaped; css and js are the package's own files.
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "default": str, "sort_keys": False}
    template = env.from_string(_asset("template.html"))
    return template.render(title=f"clinseek report: {data['run']['name']}", css=_asset("report.css"),
                           js=_asset("report.js"), data=data)


def write_report(run_dir: Path | str, out: Path | str | None = None, **limits: Any) -> Path:
    """Write the report (default <run_dir>/report.html) and return its path."""
    data = build_report_data(run_dir, **limits)
    path = Path(out) if out else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_html(data), encoding="utf-8")
    tmp.replace(path)
    return path
