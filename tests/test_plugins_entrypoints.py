"""Plugins found through real entry-point metadata, in subprocesses: listing, allowlist, broken plugins,
the example third-party package end to end, crash-and-resume, and a lazy `--help`."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "clinseek-sitenotes"


def make_dist(site: Path, name: str, entry_points: dict[str, str], package: Path | None = None) -> None:
    """Install a distribution the way pip leaves it: a package folder plus .dist-info with entry_points.txt."""
    if package is not None:
        shutil.copytree(package, site / package.name)
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[clinseek]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "clinseek-sitenotes", {"sitenotes": "clinseek_sitenotes.plugin"},
              EXAMPLE / "clinseek_sitenotes")
    broken = site / "clinseek_broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("")
    (broken / "plugin.py").write_text("import a_module_that_does_not_exist\n")
    make_dist(site, "clinseek-broken", {"broken": "clinseek_broken.plugin"})
    return site


def cli(site: Path, *args, load: str | None = None, cwd: Path | None = None, timeout=120, **popen):
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("CLINSEEK_LOAD_PLUGINS", None)
    if load is not None:
        env["CLINSEEK_LOAD_PLUGINS"] = load
    cmd = [sys.executable, "-m", "clinseek.cli", *args]
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=cwd, **popen)
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_allowlist_controls_third_party_plugins(site):
    rows = {r["name"]: r for r in json.loads(cli(site, "plugins", "--json").stdout)}
    assert rows["sitenotes"]["toolsets"] == ["sitenotes"] and rows["sitenotes"]["hosts"] == ["keyword"]
    assert rows["sitenotes"]["distribution"] == "clinseek-sitenotes" and rows["sitenotes"]["version"] == "0.1.0"
    assert rows["sitenotes"]["tools"] == {"sitenotes": ["sitenotes_search"]}
    assert "No module named 'a_module_that_does_not_exist'" in rows["broken"]["error"]
    only = {r["name"] for r in json.loads(cli(site, "plugins", "--json", load="sitenotes").stdout)}
    assert "sitenotes" in only and "broken" not in only and {"core", "ehr"} <= only
    none = {r["name"] for r in json.loads(cli(site, "plugins", "--json", load="").stdout)}
    assert "sitenotes" not in none and "core" in none  # built-ins always load


def test_example_plugin_runs_end_to_end_and_respects_the_cutoff(site, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE, work)
    proc = cli(site, "apply", "recipe.yaml", "--out", str(tmp_path / "runs"), cwd=work)
    assert proc.returncode == 0, proc.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    answers = {r["qid"]: r["answer"] for r in map(json.loads, (run_dir / "results.jsonl").open())}
    # s1's confusion note is written after its prediction time: the tool must not show it.
    assert answers == {"s1": ["no"], "s2": ["yes"], "s3": ["no"]}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["plugins"]["sitenotes"]["distribution"] == "clinseek-sitenotes"


def test_broken_plugin_fails_only_recipes_that_use_it(site, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("clinseek: 1\nname: b\nhost: {provider: keyword, keyword: x}\ntools:\n  - use: broken\n"
                      "tasks: {path: t.jsonl}\n")
    proc = cli(site, "validate", str(recipe))
    assert proc.returncode == 2
    assert "comes from plugin 'broken' (clinseek-broken), which failed to load" in proc.stderr
    assert "a_module_that_does_not_exist" in proc.stderr and "Traceback" not in proc.stderr


def test_sigkill_mid_run_then_resume_gives_every_task_once(site, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE, work)
    rows = [json.loads(line) for line in (work / "tasks.jsonl").read_text().splitlines()]
    many = [{**rows[i % 3], "qid": f"k{i}"} for i in range(24)]
    (work / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in many))
    runs = tmp_path / "runs"
    proc = cli(site, "apply", "recipe.yaml", "--out", str(runs), "--workers", "2", "--quiet",
               "--set", "host.delay_s=0.15", cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = None
    deadline = time.time() + 60
    while time.time() < deadline:
        found = list(runs.glob("*/results.jsonl")) if runs.exists() else []
        if found and len(found[0].read_text().splitlines()) >= 4:
            results = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert results is not None, "the run never wrote results"
    before = len(results.read_text().splitlines())
    assert 4 <= before < 24
    resumed = cli(site, "apply", "recipe.yaml", "--resume", str(results.parent), "--quiet",
                  "--set", "host.delay_s=0.15", cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    result_qids = [json.loads(line)["qid"] for line in results.read_text().splitlines()]
    traj_qids = [json.loads(line)["qid"] for line in (results.parent / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(result_qids) == sorted(f"k{i}" for i in range(24))
    assert sorted(traj_qids) == sorted(result_qids)


def test_help_imports_no_heavy_library(site):
    code = ("import sys\nfrom clinseek.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = ['torch', 'onnxruntime', 'qdrant_client', 'transformers', 'duckdb', 'sqlglot', 'openai',"
            " 'anthropic', 'pydicom', 'PIL', 'numpy', 'jinja2', 'datasets']\n"
            "print([m for m in heavy if m in sys.modules])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert "apply" in proc.stdout and "validate" in proc.stdout
