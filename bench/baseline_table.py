"""The rules host next to the majority-class and random baselines on the demo benchmark (docs/baseline.md).

    .venv/bin/python bench/baseline_table.py [--recipe recipes/demo.yaml] [--run RUN_DIR] [--seeds 20]

Runs the recipe through the real engine (`clinseek apply`), or reuses --run, then scores three answer sets on the
same task rows with clinseek.scoring:
- rules: the run's answers;
- majority: per task family, the most common label (yes/no and single-choice tasks), or, for multi-label tasks,
  every candidate that is in at least half of the family's labels (at least the most common one). It is computed
  from the labels themselves: the strongest answer that ignores the patient;
- random: yes/no and single-choice tasks pick a candidate uniformly; multi-label tasks include each candidate with
  probability 1/2 (at least one). Averaged over --seeds seeds.
Prints a Markdown table (set F1 in percent, per family and macro over families) ready for docs/baseline.md.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from clinseek.scoring import load_run_rows, normalise, score_rows

SINGLE = {"cxr_change"}  # one answer from the candidates


def majority_answers(rows: list[dict]) -> dict[str, list[str]]:
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    answer_of: dict[str, list[str]] = {}
    for task, rs in by_task.items():
        label_sets = Counter(tuple(sorted(r["label"])) for r in rs)
        yes_no = all(set(map(normalise, r.get("candidates") or [])) <= {"yes", "no"} for r in rs)
        if yes_no or task in SINGLE:
            # ties go to "no" / the alphabetically first label, deterministically
            best = sorted(label_sets.items(), key=lambda kv: (-kv[1], kv[0] != ("no",), kv[0]))[0][0]
            answer_of[task] = list(best)
            continue
        items = Counter(x for r in rs for x in set(r["label"]))
        chosen = [x for x, n in items.items() if n >= len(rs) / 2] or [items.most_common(1)[0][0]]
        answer_of[task] = sorted(chosen)
    return answer_of


def random_answer(r: dict, rng: random.Random) -> list[str]:
    cands = list(r.get("candidates") or []) or list(r["label"])
    yes_no = set(map(normalise, cands)) <= {"yes", "no"}
    if yes_no or r["task"] in SINGLE:
        return [rng.choice(cands)]
    picked = [c for c in cands if rng.random() < 0.5]
    return picked or [rng.choice(cands)]


def run_recipe(recipe: Path, out: Path) -> Path:
    cmd = [sys.executable, "-m", "clinseek.cli", "apply", str(recipe), "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(proc.stderr[-3000:])
    if proc.returncode != 0:
        raise SystemExit(f"clinseek apply failed ({proc.returncode})")
    m = re.search(r"run directory: (\S+)", proc.stdout + proc.stderr)
    return Path(m.group(1)) if m else sorted(out.iterdir())[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/demo.yaml")
    ap.add_argument("--run", default=None, help="score this run directory instead of running the recipe")
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    run = Path(args.run) if args.run else run_recipe(Path(args.recipe), Path(tempfile.mkdtemp(prefix="baseline-")))
    rows = sorted(load_run_rows(run), key=lambda r: (str(r["qid"]), r.get("run_index", 0)))  # effective results
    rules = score_rows(rows)
    maj = majority_answers(rows)
    majority = score_rows([{**r, "answer": maj[r["task"]], "status": "completed"} for r in rows])
    rand_f1: dict[str, list[float]] = defaultdict(list)
    for seed in range(args.seeds):
        rng = random.Random(seed)
        s = score_rows([{**r, "answer": random_answer(r, rng), "status": "completed"} for r in rows])
        for t, agg in s["per_task"].items():
            rand_f1[t].append(agg["f1"])
        rand_f1["__overall__"].append(s["overall"]["f1"])
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    statuses = Counter(r.get("status") for r in rows)
    print(f"run: {run} ({len(rows)} episodes; {dict(statuses)})\n")
    print("| task family | task type | n | majority F1 | random F1 | rules F1 | rules EM | rules vs majority |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t, agg in rules["per_task"].items():
        m, rf = majority["per_task"][t]["f1"], mean(rand_f1[t])
        ttype = next(r["task_type"] for r in rows if r["task"] == t)
        print(f"| {t} | {ttype} | {agg['questions']} | {100 * m:.1f} | {100 * rf:.1f} | {100 * agg['f1']:.1f} | "
              f"{100 * agg['exact_match']:.1f} | {100 * (agg['f1'] - m):+.1f} |")
    o = rules["overall"]
    print(f"| **macro over families** | | {o['questions']} | {100 * majority['overall']['f1']:.1f} | "
          f"{100 * mean(rand_f1['__overall__']):.1f} | {100 * o['f1']:.1f} | {100 * o['exact_match']:.1f} | "
          f"{100 * (o['f1'] - majority['overall']['f1']):+.1f} |")
    print("\nmajority answers:", json.dumps(maj))


if __name__ == "__main__":
    main()
