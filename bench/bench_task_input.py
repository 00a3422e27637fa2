"""Cost of the curated `input` packages in the task builder: build_tasks with and without them, alternated in one
process, best of each, printed side by side with the ratio.

    .venv/bin/python bench/bench_task_input.py [--db PATH] [--repeats 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None, help="cohort DuckDB (default: the cached demo cohort)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from clinseek_demo.benchmark import build_tasks
    from clinseek_demo.demo import ensure_demo

    db = args.db or ensure_demo().db
    out = Path(tempfile.mkdtemp()) / "tasks.jsonl"
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for with_input in (False, True):
            t0 = time.perf_counter()
            build_tasks(db, out, per_task=40, seed=7, with_input=with_input)
            times[with_input].append(time.perf_counter() - t0)
    rows = sum(1 for _ in out.open())
    print(f"database: {db} ({rows} task rows)")
    print(f"{'tasks.jsonl':<28} {'best s':>8} {'runs':>20}")
    for with_input, label in ((False, "without input"), (True, "with input (curator)")):
        runs = ", ".join(f"{x:.2f}" for x in times[with_input])
        print(f"{label:<28} {min(times[with_input]):>8.2f} {runs:>20}")
    per_row = (min(times[True]) - min(times[False])) / rows * 1000
    print(f"ratio with/without: {min(times[True]) / min(times[False]):.1f}x; {per_row:.1f} ms per task row")


if __name__ == "__main__":
    main()
