"""Cohort build speed and memory: 1k patients (target: under a minute) and a large chunked build with peak RSS.

    .venv/bin/python bench/bench_cohort.py [--large 20000] [--chunk 2500] [--skip-images]

Each build runs in its own process and reports its own peak RSS (ru_maxrss; image workers not included).
Printed side by side in the same run: tables-only vs with-images time at 1k patients, per-patient time at 1k vs the large build
(scaling), and the large build's peak RSS chunked vs in a single chunk (what chunking buys).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, resource, sys, time
from pathlib import Path
from clinseek_demo.build import build_cohort
out, n, chunk, images, mem = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
t0, c0 = time.perf_counter(), time.process_time()
rep = build_cohort(Path(out), patients=n, seed=7, images=images, chunk_patients=chunk, memory_limit=mem)
print(json.dumps({"wall": time.perf_counter() - t0, "rows": sum(rep.rows.values()), "images": rep.images,
                  "events": rep.rows["labevents"] + rep.rows["chartevents"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(n: int, chunk: int, images: bool, mem: str = "1GB") -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-cohort-") as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([sys.executable, "-c", CHILD, tmp, str(n), str(chunk), "1" if images else "0", mem],
                              capture_output=True, text=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=20000)
    ap.add_argument("--chunk", type=int, default=2500)
    ap.add_argument("--skip-images", action="store_true")
    ap.add_argument("--memory-limit", default="1GB", help="DuckDB memory limit of the large chunked build")
    ap.add_argument("--only-large", action="store_true", help="just the large chunked build (e.g. 100000)")
    ap.add_argument("--only-small", action="store_true", help="just the 1k builds, tables only and with images")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    t = time.perf_counter()
    if args.only_large:
        r = run(args.large, args.chunk, False, args.memory_limit)
        print(f"{args.large} patients, chunk {args.chunk}, memory limit {args.memory_limit}: wall {r['wall']:.1f} s, "
              f"cpu {r['cpu']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, {r['rows']:,} rows")
        return
    small = run(args.small, 5000, False)
    print(f"{args.small} patients, tables only: wall {small['wall']:.1f} s, cpu {small['cpu']:.1f} s, "
          f"{small['rows']:,} rows")
    if not args.skip_images:
        img = run(args.small, 5000, True)
        print(f"{args.small} patients, with {img['images']} images: wall {img['wall']:.1f} s, cpu {img['cpu']:.1f} s "
              f"-> images cost x{img['cpu'] / small['cpu']:.1f} the CPU of the tables")
    if args.only_small:
        return
    chunked = run(args.large, args.chunk, False, args.memory_limit)
    print(f"{args.large} patients, chunk {args.chunk}, memory limit {args.memory_limit}: "
          f"wall {chunked['wall']:.1f} s, cpu {chunked['cpu']:.1f} s, peak RSS {chunked['peak_rss_mb']:.0f} MB, "
          f"{chunked['rows']:,} rows")
    single = run(args.large, args.large, False)
    print(f"{args.large} patients, one chunk: wall {single['wall']:.1f} s, peak RSS {single['peak_rss_mb']:.0f} MB")
    per_small = small["cpu"] / args.small * 1000
    per_large = chunked["cpu"] / args.large * 1000
    print(f"cpu ms/patient: {per_small:.1f} at {args.small} vs {per_large:.1f} at {args.large} "
          f"(x{per_large / per_small:.2f})")
    print(f"peak RSS chunked / one chunk: {chunked['peak_rss_mb']:.0f} / {single['peak_rss_mb']:.0f} MB "
          f"= x{chunked['peak_rss_mb'] / single['peak_rss_mb']:.2f}")
    print(f"total bench time {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
