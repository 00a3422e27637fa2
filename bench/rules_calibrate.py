"""Choose the rules host's per-family thresholds on a development cohort (never the demo benchmark).

    .venv/bin/python bench/rules_calibrate.py [--patients 1500] [--seed 11] [--per-task 300] [--fit]

Builds a synthetic cohort with its own seed and the benchmark's own task builder (balanced yes/no, like the
demo), runs the rules host through the real ehr tools (EpisodeRunner) on every risk task, and prints, per family,
the threshold of the points that maximises accuracy, next to the majority-class accuracy. `--fit` also fits each
family's points table (a logistic fit rounded to half points) instead of using RISK_WEIGHTS. The labels are read
here, by the calibration script; the host never sees them.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections import Counter
from pathlib import Path

from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox
from clinseek_demo.rules import (RISK_FAMILIES, RISK_WEIGHTS, RulesConfig, RulesHost, feature_vector, observations,
                             risk_features, risk_points, warning_score)
from clinseek.tasks import Task


async def run_all(tasks: list[Task], ehr, workers: int = 4):
    host = RulesHost(RulesConfig(use_kb=False))
    box = ToolBox.build([ehr])
    sem = asyncio.Semaphore(workers)

    async def one(task):
        async with sem:
            runner = EpisodeRunner(task=task, run_index=0, host=host, toolbox=box, limits=AgentLimits(),
                                   system="", user="")
            return await runner.run()

    return await asyncio.gather(*(one(t) for t in tasks))


def fit_points(feats, y):
    """A logistic fit; coefficients divided by the warning score's and rounded to half points."""
    from sklearn.linear_model import LogisticRegression

    names = list(feature_vector(feats[0]))
    X = [[*feature_vector(f).values(), warning_score(f["values"], f["age"])[0]] for f in feats]
    coef = dict(zip(names + ["ews"], LogisticRegression(C=1.0, max_iter=2000).fit(X, y).coef_[0]))
    unit = coef["ews"] if coef["ews"] > 0.02 else 0.1
    table = {k: round(2 * v / unit) / 2 for k, v in coef.items() if k != "ews" and round(2 * v / unit)}
    if coef["ews"] <= 0.02:
        table["ews"] = -1.0  # the score carries no signal for this family: cancel it
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--per-task", type=int, default=300)
    ap.add_argument("--fit", action="store_true", help="fit the points tables instead of using RISK_WEIGHTS")
    args = ap.parse_args()
    from clinseek_demo.benchmark import RISK_TASKS, build_tasks
    from clinseek_demo.build import build_cohort
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    out = Path(tempfile.mkdtemp()) / "dev"
    build_cohort(out, patients=args.patients, seed=args.seed, images=False)
    build_tasks(out / "cohort.duckdb", out / "tasks.jsonl", per_task=args.per_task, seed=args.seed,
                tasks=RISK_TASKS)
    tasks = [Task.model_validate(json.loads(x)) for x in (out / "tasks.jsonl").read_text().splitlines() if x]
    ehr = EhrToolset(EhrConfig(database=str(out / "cohort.duckdb")), None)
    ehr.open()
    try:
        records = asyncio.run(run_all(tasks, ehr))
    finally:
        ehr.close()
    errors = Counter(m["content"][:90] for _, traj in records for m in traj["messages"]
                     if m["role"] == "tool" and m.get("is_error"))
    if errors:
        print("tool errors:", dict(errors))
    feats = [risk_features(observations(traj["messages"]), t.prediction_time) for t, (_, traj) in zip(tasks, records)]
    print(f"dev cohort: {args.patients} patients, seed {args.seed}, balanced yes/no tasks (<= {args.per_task} each)")
    print(f"{'family':<18} {'n':>4} {'yes':>5} {'majority':>8} {'threshold':>9} {'accuracy':>8}")
    fitted = {}
    for fam in RISK_FAMILIES:
        idx = [i for i, t in enumerate(tasks) if t.task == fam]
        y = [tasks[i].label == ["yes"] for i in idx]
        n, pos = len(y), sum(y)
        if args.fit:
            fitted[fam] = fit_points([feats[i] for i in idx], y)
        table = {**RISK_WEIGHTS, **fitted}
        rows = [(risk_points(fam, feats[i], table)[0], yy) for i, yy in zip(idx, y)]
        best = max(sorted({p for p, _ in rows}), key=lambda t: sum((p >= t) == yy for p, yy in rows))
        acc = sum((p >= best) == yy for p, yy in rows) / n
        print(f"{fam:<18} {n:>4} {pos / n:>5.2f} {max(pos, n - pos) / n:>8.3f} {best:>9g} {acc:>8.3f}")
    if fitted:
        print("fitted RISK_WEIGHTS =", json.dumps(fitted))


if __name__ == "__main__":
    main()
