"""Ten tasks against a model server that is down: how long `clinseek apply` takes to give up, before and after
the pre-flight check and the circuit breaker, measured side by side in one run.

"Down" is a closed local port (bound, then closed: connections are refused). Each mode is a real `clinseek apply`
in its own process (4 workers, default retry settings) with a recipe whose only tool is the built-in finish:
- before: `--set host.preflight=false --set host.stop_after_connection_failures=0`, which is the engine as it was
  (every episode spends its 6 retries, about 30-60 s of backoff, and is recorded as an error);
- breaker: `--set host.preflight=false` (the server dies between the pre-flight and the first episode);
- after: the defaults (the pre-flight request fails, nothing is written).

    .venv/bin/python bench/bench_dead_host.py [--tasks 10] [--workers 4] [--skip-before]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clinseek.testing import closed_port

ROOT = Path(__file__).resolve().parent.parent

MODES = {
    "before": ["--set", "host.preflight=false", "--set", "host.stop_after_connection_failures=0"],
    "breaker": ["--set", "host.preflight=false"],
    "after": [],
}




def write_recipe(folder: Path, tasks: int, port: int) -> Path:
    rows = [{"qid": f"q{i}", "subject_id": 1000 + i, "hadm_id": 2000 + i, "prediction_time": "2150-01-01T12:00:00",
             "task": "mortality", "task_type": "risk_prediction", "question": "Will the patient die in hospital?",
             "candidates": ["yes", "no"], "label": ["no"]} for i in range(tasks)]
    (folder / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = folder / "dead.yaml"
    recipe.write_text(f"""clinseek: 1
name: dead-host
host: {{provider: openai, base_url: "http://127.0.0.1:{port}/v1", model: m}}
tasks: {{source: jsonl, path: tasks.jsonl}}
output: {{report: false}}
""")
    return recipe


def run_mode(recipe: Path, out: Path, workers: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "clinseek.cli", "apply", str(recipe), "--quiet", "--workers", str(workers),
           "--out", str(out), *extra]
    env = {**os.environ, "CLINSEEK_CACHE": str(out.parent / "cache")}
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(out.parent))
    wall = time.perf_counter() - started
    runs = list(out.glob("*/results.jsonl")) if out.exists() else []
    recorded = [json.loads(line) for p in runs for line in p.read_text().splitlines() if line.strip()]
    last = (proc.stderr.strip().splitlines() or [""])
    message = next((line for line in last if line.startswith("error:")), last[-1])
    return {"wall_s": wall, "exit": proc.returncode, "run_dirs": len(list(out.iterdir())) if out.exists() else 0,
            "recorded": len(recorded), "errors": sum(r.get("status") == "error" for r in recorded),
            "message": message[:160]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--skip-before", action="store_true", help="leave out the slow 'before' mode")
    args = parser.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} CPUs; uptime: {load}")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        recipe = write_recipe(folder, args.tasks, closed_port())
        for mode, extra in MODES.items():
            if mode == "before" and args.skip_before:
                continue
            rows[mode] = run_mode(recipe, folder / f"runs-{mode}", args.workers, extra)
            r = rows[mode]
            print(f"{mode:8s} {r['wall_s']:7.2f} s  exit {r['exit']}  run dirs {r['run_dirs']}  episodes recorded "
                  f"{r['recorded']} ({r['errors']} as error)  | {r['message']}", flush=True)
    if "before" in rows:
        before = rows["before"]["wall_s"]
        print(f"before / after   = {before / rows['after']['wall_s']:.0f}x")
        print(f"before / breaker = {before / rows['breaker']['wall_s']:.0f}x")
    print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
