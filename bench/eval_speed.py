"""Throughput of scoring, the report and the exporters on a large run, next to the floor of reading it.

    .venv/bin/python bench/eval_speed.py [--episodes 5000]

Builds a run directory of N realistic episodes (the sample records, repeated with new qids), then times, in the
same process: reading and JSON-parsing trajectories.jsonl (the floor every consumer pays), score_run,
write_report, and export_run for each format. Prints seconds, episodes per second, and each step's ratio to the
floor.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from clinseek.exporters import export_run
from clinseek.report import write_report
from clinseek.report.sample import EPISODES, sample_records
from clinseek.scoring import score_run


def build(run: Path, n: int) -> None:
    results, trajs = sample_records()
    run.mkdir(parents=True)
    with (run / "results.jsonl").open("w") as rf, (run / "trajectories.jsonl").open("w") as tf:
        for i in range(n):
            k = i % len(EPISODES)
            qid = f"{results[k]['qid']}_{i // len(EPISODES)}"
            rf.write(json.dumps({**results[k], "qid": qid}) + "\n")
            tf.write(json.dumps({**trajs[k], "qid": qid, "task": {**trajs[k]["task"], "qid": qid}}) + "\n")
    (run / "manifest.json").write_text(json.dumps({"recipe": {"name": "bench"}}))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=5000)
    n = ap.parse_args().episodes
    tmp = Path(tempfile.mkdtemp())
    try:
        run = tmp / "run"
        build(run, n)

        def floor():
            with (run / "trajectories.jsonl").open() as fh:
                for line in fh:
                    json.loads(line)

        steps = {"read+parse trajectories (floor)": floor,
                 "score_run": lambda: score_run(run),
                 "write_report": lambda: write_report(run),
                 "export openai": lambda: export_run(run, "openai", tmp / "o"),
                 "export trl": lambda: export_run(run, "trl", tmp / "t"),
                 "export sharegpt": lambda: export_run(run, "sharegpt", tmp / "s"),
                 "export hf (datasets)": lambda: export_run(run, "hf", tmp / "h")}
        times = {name: timed(fn) for name, fn in steps.items()}
        base = times["read+parse trajectories (floor)"]
        size = (run / "trajectories.jsonl").stat().st_size / 1e6
        print(f"{n} episodes, trajectories.jsonl {size:.1f} MB, report {(run / 'report.html').stat().st_size / 1e6:.1f} MB")
        print(f"{'step':<34} {'seconds':>8} {'episodes/s':>11} {'x floor':>8}")
        for name, t in times.items():
            print(f"{name:<34} {t:>8.3f} {n / t:>11.0f} {t / base:>8.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
