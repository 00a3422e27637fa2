"""Worst cases of the SQL guard's bounds: the heaviest calls it still allows, timed and with peak memory, beside
the statement time limit; and the cost of refusing the unbounded ones before they run.

Each query runs through `ehr_sql` (the model's path) on the test fixture in a fresh subprocess, so peak RSS is the
query's own. The ratios printed are (worst allowed query's wall time) / (the 5 s time limit), which must stay at most 1.1 (a
query past the limit is stopped at it, not after), and (peak RSS) / (the 2 GB DuckDB memory limit), which must stay
below 1.

    .venv/bin/python bench/bench_ehr_bounds.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ALLOWED = [
    ("repeat 100k chars", "SELECT length(repeat('x', 100000)) AS n"),
    ("repeat column x100", "SELECT max(length(repeat(text, 100))) AS n FROM radiology"),
    ("lpad 100k", "SELECT length(lpad('x', 100000, 'y')) AS n"),
    ("list_sort(range(100k))", "SELECT len(list_sort(range(100000))) AS n"),
    ("repeat in a 3-way cross join", "SELECT count(*) AS n FROM (SELECT repeat('x', 100000) AS s FROM chartevents a, "
                                     "chartevents b, chartevents c) t"),
    ("8-way cross join count", "SELECT count(*) AS n FROM chartevents a, chartevents b, chartevents c, "
                                      "chartevents d, chartevents e, chartevents f, chartevents g, chartevents h"),
    ("string_agg over a cross join", "SELECT length(string_agg(a.text || b.text || c.text, '')) AS n FROM radiology "
                                     "a, radiology b, radiology c, radiology d"),
    ("recursive CTE to the limit", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                                   "SELECT count(*) FROM r"),
]
REFUSED = [
    ("repeat 2e9", "SELECT length(repeat('x', 2000000000)) AS n"),
    ("list_sort(range(1.5e8))", "SELECT len(list_sort(range(150000000))) AS n"),
]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1] + "/plugins")
from clinseek.errors import ToolError
from clinseek.toolsets import Binding, Episode
from clinseek_ehr.testing import CUTOFF, PATIENT
from clinseek_ehr.toolset import EhrConfig, EhrToolset
ts = EhrToolset(EhrConfig(database=sys.argv[2], sql_timeout_s=5.0, memory_limit="2GB"), None)
ts.open()
e = Episode(binding=Binding(qid="q", subject_id=PATIENT, hadm_id=None, prediction_time=CUTOFF), task=None)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    if sys.argv[4] == "unguarded":   # what the bound prevents: the same SQL straight to the backend
        res = ts.backend.run(sys.argv[3], 5, 5.0); out, status = str(res.rows)[:80], "ok"
    else:
        out = ts.ehr_sql(e, sys.argv[3]); status = "ok"
except ToolError as exc:
    out, status = str(exc), ("refused" if str(exc).startswith("query refused") else "error")
wall = time.perf_counter() - t0
print(json.dumps({"status": status, "wall_s": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "base_mb": base / 1024, "out": out[:80]}), flush=True)
import os
os._exit(0)   # skip interpreter teardown while DuckDB's background threads still run
"""


def run_one(db: Path, sql: str, mode: str = "guarded") -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(db), sql, mode], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--unguarded", action="store_true",
                    help="also run the refused queries without the guard, once each (needs ~5 GB and ~30 s)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "plugins"))
    from clinseek_ehr.testing import make_fixture_db

    db = ROOT / ".bench-cache" / "bounds-fixture.duckdb"
    db.parent.mkdir(exist_ok=True)
    if not db.exists():
        make_fixture_db(db)
    print(f"{'query':34} {'status':8} {'wall p50 s':>10} {'peak RSS MB':>12} {'RSS over start':>14}")
    worst_wall, worst_rss = 0.0, 0.0
    for label, sql in ALLOWED + REFUSED:
        runs = [run_one(db, sql) for _ in range(args.repeats)]
        wall = statistics.median(r["wall_s"] for r in runs)
        rss = max(r["rss_mb"] for r in runs)
        grown = max(r["rss_mb"] - r["base_mb"] for r in runs)
        print(f"{label:34} {runs[0]['status']:8} {wall:10.3f} {rss:12.0f} {grown:14.0f}")
        if (label, sql) in ALLOWED:
            worst_wall, worst_rss = max(worst_wall, wall), max(worst_rss, rss)
    if args.unguarded:
        print("\nwithout the guard (backend only, 5 s limit, 2 GB memory limit):")
        for label, sql in REFUSED:
            r = run_one(db, sql, "unguarded")
            print(f"{label:34} {r['status']:8} {r['wall_s']:10.3f} {r['rss_mb']:12.0f}   "
                  f"wall / limit {r['wall_s'] / 5.0:.2f}")
    print(f"\nworst allowed wall / 5 s time limit: {worst_wall / 5.0:.2f} (target <= 1.1)")
    print(f"worst allowed peak RSS / 2 GB memory limit: {worst_rss / 2048:.2f} (target < 1)")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"(bench took {time.perf_counter() - t:.0f} s)")
