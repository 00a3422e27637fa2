"""ensure_demo (cache, lock, atomic build), the `demo` task source, CXR images on disk, and `clinseek data`."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from clinseek_demo import GENERATOR_VERSION
from clinseek_demo import demo as demo_mod
from clinseek_demo.cli import data
from clinseek_demo.demo import ensure_demo
from clinseek_demo.source import DemoTaskSource
from clinseek.errors import UserError


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return ensure_demo(patients=12, seed=2, cache_dir=cache), cache


def test_demo_is_built_once_into_a_folder_named_by_version_patients_seed(small_demo, monkeypatch):
    paths, cache = small_demo
    assert paths.root == cache / "demo" / f"v{GENERATOR_VERSION}-p12-s2"
    assert paths.db.exists() and paths.tasks.exists()
    assert not list(paths.root.parent.glob("*.tmp-*")), "temporary build folder left behind"

    def boom(*a, **k):
        raise AssertionError("rebuilt a cached demo")

    monkeypatch.setattr(demo_mod, "build_cohort", boom)
    assert ensure_demo(patients=12, seed=2, cache_dir=cache) == paths


def test_demo_images_exist_match_metadata_and_show_their_findings(small_demo):
    paths, _ = small_demo
    con = duckdb.connect(str(paths.db), read_only=True)
    rows = con.execute("SELECT m.dicom_id, m.path, m.Rows, m.Columns FROM cxr_metadata m").fetchall()
    truth = {}
    for dicom_id, label, present in con.execute("SELECT dicom_id, label, present FROM cxr_labels").fetchall():
        truth.setdefault(dicom_id, {})[label] = present
    con.close()
    assert rows
    for dicom_id, rel, h, w in rows:
        assert rel.startswith("files/p10/p") and rel.endswith(f"/{dicom_id}.png")
        img = Image.open(paths.root / rel)
        assert img.size == (w, h) and min(img.size) >= 256 and img.mode == "L"
        assert sum(truth[dicom_id].values()) >= 1  # a finding or 'no_finding'
    # the same study always renders the same pixels: re-render one and compare
    from clinseek_demo.cxr_images import render_cxr

    con = duckdb.connect(str(paths.db), read_only=True)
    dicom_id, study_id, rel = con.execute("SELECT dicom_id, study_id, path FROM cxr_metadata LIMIT 1").fetchone()
    con.close()
    findings = frozenset(k for k, v in truth[dicom_id].items() if v and k != "no_finding")
    again = render_cxr(findings, np.random.default_rng([2, study_id]), size=256)
    assert np.array_equal(np.asarray(Image.open(paths.root / rel)), again)


def test_two_callers_asking_at_once_get_one_build(tmp_path, monkeypatch):
    calls = []

    def slow_build(out, **kwargs):
        calls.append(out)
        time.sleep(0.5)  # long enough for the second caller to arrive while the first builds
        (Path(out) / "cohort.duckdb").write_text("db")

    def fake_tasks(db, out, **kwargs):
        Path(out).write_text("")

    monkeypatch.setattr(demo_mod, "build_cohort", slow_build)
    monkeypatch.setattr("clinseek_demo.benchmark.build_tasks", fake_tasks)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: ensure_demo(patients=5, seed=4, cache_dir=tmp_path), range(2)))
    assert len(calls) == 1 and results[0] == results[1]
    assert [p.name for p in (tmp_path / "demo").iterdir() if p.is_dir()] == [f"v{GENERATOR_VERSION}-p5-s4"]


def test_failed_build_leaves_no_partial_demo(tmp_path, monkeypatch):
    def fail(out, **kwargs):
        (Path(out) / "cohort.duckdb").write_text("half")
        raise RuntimeError("killed")

    monkeypatch.setattr(demo_mod, "build_cohort", fail)
    with pytest.raises(RuntimeError):
        ensure_demo(patients=3, seed=1, cache_dir=tmp_path)
    assert [p.name for p in (tmp_path / "demo").iterdir() if p.is_dir()] == []


def test_rebuilding_into_a_folder_drops_the_old_images(tmp_path):
    from clinseek_demo.build import build_cohort

    build_cohort(tmp_path, patients=4, seed=1)
    old = {p.relative_to(tmp_path) for p in tmp_path.rglob("*.png")}
    build_cohort(tmp_path, patients=4, seed=2)
    new = {p.relative_to(tmp_path) for p in tmp_path.rglob("*.png")}
    con = duckdb.connect(str(tmp_path / "cohort.duckdb"), read_only=True)
    listed = {Path(p) for (p,) in con.execute("SELECT path FROM cxr_metadata").fetchall()}
    con.close()
    assert old and old != new and new == listed  # every PNG on disk is one the new database lists


def test_cache_dir_comes_from_clinseek_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CLINSEEK_CACHE", str(tmp_path))
    assert demo_mod.demo_folder(7, 1) == tmp_path / "demo" / f"v{GENERATOR_VERSION}-p7-s1"


def test_demo_task_source_yields_tasks_with_absolute_image_paths(small_demo):
    paths, cache = small_demo
    ctx = SimpleNamespace(cache_dir=cache, recipe_dir=Path("."), warn=lambda s: None)
    src = DemoTaskSource({"patients": 12, "seed": 2}, ctx)
    tasks = list(src.iter_tasks())
    assert len(tasks) == len(paths.tasks.read_text().splitlines())
    mm = [t for t in tasks if t.task_type == "multimodal"]
    assert mm and all(Path(p).is_absolute() and Path(p).exists() for t in mm for p in t.image_paths)
    only = list(DemoTaskSource({"with": {"patients": 12, "seed": 2, "tasks": ["mortality"], "limit": 2}},
                               ctx).iter_tasks())
    assert 0 < len(only) <= 2 and {t.task for t in only} == {"mortality"}
    with pytest.raises(UserError, match="unknown demo task"):
        list(DemoTaskSource({"patients": 12, "seed": 2, "tasks": ["nope"]}, ctx).iter_tasks())
    with pytest.raises(UserError, match="positive integer"):
        list(DemoTaskSource({"patients": "many"}, ctx).iter_tasks())


def test_demo_source_is_registered_by_the_demo_plugin_not_the_core():
    from clinseek import builtin
    from clinseek_demo import plugin

    seen, core = [], []
    plugin.register_task_sources(seen.append)
    builtin.register_task_sources(core.append)
    assert DemoTaskSource in seen and DemoTaskSource not in core


def test_cli_demo_and_tasks(tmp_path):
    runner = CliRunner()
    res = runner.invoke(data, ["demo", "--out", str(tmp_path / "c"), "--patients", "10", "--seed", "3",
                               "--no-images", "--per-task", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "cohort.duckdb").exists()
    rows = [json.loads(x) for x in (tmp_path / "c" / "tasks.jsonl").read_text().splitlines()]
    assert rows and max(sum(r["task"] == t for r in rows) for t in {r["task"] for r in rows}) <= 3
    res = runner.invoke(data, ["tasks", str(tmp_path / "c" / "cohort.duckdb"), "--out", str(tmp_path / "t.jsonl"),
                               "--task", "cxr_findings", "--per-task", "2"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert {r["task"] for r in rows} == {"cxr_findings"}
    # the CLI writes image paths resolved against the database's folder
    assert all(Path(p).is_absolute() for r in rows for p in r["image_paths"])
    res = runner.invoke(data, ["tasks", str(tmp_path / "missing.duckdb"), "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code != 0 and "not found" in str(res.exception)


def test_image_workers_do_not_change_pixels(tmp_path):
    from clinseek_demo.render import write_images

    def jobs(root):
        return [(str(root / f"{i}.png"), ("consolidation",) if i % 3 else (), 5, 50_000_000 + i, 256)
                for i in range(64)]

    assert write_images(jobs(tmp_path / "pool"), workers=2) == 64  # spawned workers, one BLAS thread each
    assert write_images(jobs(tmp_path / "inproc"), workers=1) == 64
    for i in range(64):
        assert (tmp_path / "pool" / f"{i}.png").read_bytes() == (tmp_path / "inproc" / f"{i}.png").read_bytes()


def test_clinseek_data_is_reachable_from_the_top_level_cli(tmp_path, capsys):
    from clinseek.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["data", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "tasks" in out and "import-mimic-iv" in out
    with pytest.raises(SystemExit) as exc:  # a user error: one message, exit code 2, no traceback
        main(["data", "import-mimic-iv", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.duckdb")])
    assert exc.value.code == 2
    assert "MIMIC-IV folder not found" in capsys.readouterr().err
