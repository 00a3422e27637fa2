"""A real local LLM on a fixed subset of the demo benchmark: constrained vs free tool calls, seek vs curated,
against the rules host and the majority baseline, on the same tasks in one run.

    .venv/bin/python bench/bench_llm.py [--per-family 4] [--models 1.5b,0.5b] [--out /tmp/bench-llm]
    .venv/bin/python bench/bench_llm.py --only-ablations      # small-model prompts and tools_by_task, each off

The subset: for each task family (task_type), tasks taken round-robin over its task names in the demo's own order
(first qid of each name, then the second, ...), --per-family of them: the same every run. Each configuration runs
through `clinseek apply` (recipes/demo-llm.yaml, --workers 1). Printed per configuration:
- validity: share of assistant turns whose calls all parse, name an offered tool and pass its JSON schema (a turn
  with no call counts as invalid);
- completed (finish called), turns and tool calls per episode, wall seconds per episode;
- prompt tokens per turn: in the prompt vs evaluated (what the prompt cache did not cover);
- macro F1 over families and per family, next to the rules host and the majority baseline on the same tasks
  (majority: from the labels of all 400 demo tasks, as in bench/baseline_table.py).
Then `clinseek compare` of 1.5B seek vs curated (paired bootstrap intervals), when both ran.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import jsonschema

sys.path.insert(0, str(Path(__file__).parent))
from baseline_table import majority_answers  # noqa: E402

from clinseek.scoring import score_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLINSEEK = [str(Path(sys.executable).parent / "clinseek")]
MODELS = {"1.5b": "qwen2.5-coder-1.5b-instruct", "0.5b": "qwen2.5-coder-0.5b-instruct"}


def demo_tasks() -> list[dict]:
    """Every demo task with its label, in the source's order."""
    from clinseek.commands.common import load
    from clinseek.engine import assemble, select_tasks

    assembly = assemble(load(str(ROOT / "recipes" / "demo.yaml"), None, ()))
    return [t.model_dump(mode="json") for t in select_tasks(assembly)]


def fixed_subset(tasks: list[dict], per_family: int) -> list[str]:
    by_family: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for t in tasks:
        by_family[t["task_type"]][t["task"]].append(t["qid"])
    chosen = []
    for family in sorted(by_family):
        names = list(by_family[family].values())
        picked: list[str] = []
        i = 0
        while len(picked) < per_family and any(i < len(q) for q in names):
            picked += [q[i] for q in names if i < len(q)][: per_family - len(picked)]
            i += 1
        chosen += picked
    return chosen


def apply(label: str, recipe: str, qids: list[str], out: Path, sets: list[str]) -> tuple[Path, float]:
    target = out / label
    started = time.perf_counter()
    command = CLINSEEK + ["apply", str(ROOT / "recipes" / recipe), "--out", str(target), "--quiet", "--workers",
                          "1", "--set", "tasks.sample=null", "--set", f"tasks.filter.qid={qids}"]
    for item in sets:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{label}: clinseek apply failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return max(target.iterdir(), key=lambda p: p.stat().st_mtime), time.perf_counter() - started


def turn_validity(traj: dict) -> tuple[int, int]:
    """(valid assistant turns, assistant turns) of one trajectory."""
    schemas = {t["name"]: t["parameters"] for t in traj["tools"]}
    valid = total = 0
    for m in traj["messages"]:
        if m["role"] != "assistant":
            continue
        total += 1
        calls = m.get("tool_calls") or []
        ok = bool(calls)
        for c in calls:
            args = c.get("arguments")
            if c["name"] not in schemas or not isinstance(args, dict) or "_raw" in args:
                ok = False
                break
            try:
                jsonschema.validate(args, schemas[c["name"]])
            except jsonschema.ValidationError:
                ok = False
                break
        valid += ok
    return valid, total


def read_run(run_dir: Path) -> tuple[list[dict], list[dict]]:
    results = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines() if x.strip()]
    trajs = [json.loads(x) for x in (run_dir / "trajectories.jsonl").read_text().splitlines() if x.strip()]
    return results, trajs


def f1_by_family(rows: list[dict]) -> tuple[float, dict[str, float]]:
    fams = defaultdict(list)
    for r in rows:
        fams[r["task_type"]].append(r)
    per = {f: score_rows(rs)["overall"]["f1"] for f, rs in sorted(fams.items())}
    return sum(per.values()) / len(per), per


def summary(label: str, run_dir: Path, wall: float) -> dict:
    results, trajs = read_run(run_dir)
    valid = total = 0
    for t in trajs:
        v, n = turn_validity(t)
        valid, total = valid + v, total + n
    turns = sum(r["turns"] for r in results)
    inp = sum(r["usage"]["input_tokens"] for r in results)
    cached = sum(r["usage"]["cached_tokens"] for r in results)
    macro, per = f1_by_family(results)
    return {"label": label, "episodes": len(results), "validity": valid / max(total, 1),
            "completed": sum(r["status"] == "completed" for r in results) / len(results),
            "turns": turns / len(results), "tool_calls": sum(r["tool_calls"] for r in results) / len(results),
            "wall_s": sum(r["timings"]["wall_s"] for r in results) / len(results), "run_wall_s": wall,
            "prompt_per_turn": inp / max(turns, 1), "evaluated_per_turn": (inp - cached) / max(turns, 1),
            "output_per_turn": sum(r["usage"]["output_tokens"] for r in results) / max(turns, 1),
            "macro_f1": macro, "f1": per, "run_dir": str(run_dir)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-family", type=int, default=4)
    ap.add_argument("--models", default="1.5b,0.5b")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-llm"))
    ap.add_argument("--skip-curated", action="store_true")
    ap.add_argument("--skip-free", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="keep a configuration's finished run under --out instead of running it again")
    ap.add_argument("--only-ablations", action="store_true",
                    help="run (beside rules) only the 1.5B constrained ablations: the default seek prompts instead "
                         "of the small-model ones, and every tool instead of tools_by_task")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = demo_tasks()
    qids = fixed_subset(tasks, args.per_family)
    chosen = [t for t in tasks if t["qid"] in set(qids)]
    print(f"subset: {len(qids)} tasks: " + ", ".join(qids), flush=True)
    configs = [("rules", "demo.yaml", [])]
    if args.only_ablations:
        model = f"host.model={MODELS['1.5b']}"
        configs += [("1.5b constrained, default prompts", "demo-llm.yaml",
                     [model, "prompts.system=seek_system.j2", "prompts.user=seek_user.j2"]),
                    ("1.5b constrained, every tool", "demo-llm.yaml", [model, "agent.tools_by_task={}"])]
    keys = [] if args.only_ablations else args.models.split(",")
    for key in keys:  # constrained first, then curated, free runs (the slowest) last
        configs.append((f"{key} constrained", "demo-llm.yaml", [f"host.model={MODELS[key]}"]))
        if key == "1.5b" and not args.skip_curated:
            # the curator with 30 events (the demo tasks carry 100-event packages, ~6,000 tokens: ~3 min each on 2 cores)
            configs.append((f"{key} curated", "demo-llm.yaml", [f"host.model={MODELS[key]}", "agent.evidence=curated",
                                                                "agent.curated.source=curator", "agent.curated.max_events=30",
                                                                "prompts.system=small_curated_system.j2",
                                                                "prompts.user=small_curated_user.j2"]))
    for key in [] if args.skip_free else reversed(keys):
        configs.append((f"{key} free", "demo-llm.yaml", [f"host.model={MODELS[key]}",
                                                         "host.constrain_tool_calls=false"]))
    rows = []
    for label, recipe, sets in configs:
        name = label.replace(" ", "-").replace(",", "")
        done = [d for d in (args.out / name).glob("*/results.jsonl") if len(d.read_text().splitlines()) == len(qids)]
        if args.reuse and done:
            run_dir, wall = done[0].parent, float("nan")
        else:
            run_dir, wall = apply(name, recipe, qids, args.out, sets)
        rows.append(summary(label, run_dir, wall))
        print(json.dumps(rows[-1]), flush=True)
    majority = majority_answers(tasks)
    base_macro, base_per = f1_by_family([{**t, "answer": majority[t["task"]], "status": "completed"}
                                         for t in chosen])
    families = sorted(base_per)
    print("\n| configuration | validity | completed | turns | tool calls | s/episode | prompt tok/turn | "
          "evaluated tok/turn | macro F1 | " + " | ".join(families) + " |")
    print("|---" * (10 + len(families)) + "|")
    for r in rows:
        print(f"| {r['label']} | {r['validity']:.3f} | {r['completed']:.2f} | {r['turns']:.1f} | {r['tool_calls']:.1f}"
              f" | {r['wall_s']:.1f} | {r['prompt_per_turn']:.0f} | {r['evaluated_per_turn']:.0f} | "
              f"{r['macro_f1']:.3f} | " + " | ".join(f"{r['f1'].get(f, 0):.3f}" for f in families) + " |")
    print(f"| majority baseline | | | | | | | | {base_macro:.3f} | "
          + " | ".join(f"{base_per[f]:.3f}" for f in families) + " |")
    by = {r["label"]: r for r in rows}
    if "1.5b constrained" in by and "1.5b curated" in by:
        done = subprocess.run(CLINSEEK + ["compare", by["1.5b constrained"]["run_dir"], by["1.5b curated"]["run_dir"]],
                              capture_output=True, text=True)
        print("\nclinseek compare (1.5b seek vs curated):\n" + done.stdout + done.stderr[-500:])


if __name__ == "__main__":
    main()
