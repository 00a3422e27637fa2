"""The cxr toolset: visibility (patient + cutoff), the three tools, errors as observations, cache, micro-batching,
providers and the manifest. Uses the committed phantom model (no torch needed)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import numpy as np
import pytest

from clinseek.errors import ToolError, UserError
from clinseek_cxr import runtime
from clinseek_cxr.toolset import CxrConfig, CxrToolset
from test_cxr_fixtures import CUTOFF, context, episode, make_db


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxrdb") / "site"
    root.mkdir()
    return make_db(root, rg1=True)


def _open(db, tmp_path, **cfg):
    ts = CxrToolset(CxrConfig(database=str(db), model="phantom", providers="cpu", **cfg), context(tmp_path))
    ts.open()
    return ts


@pytest.fixture
def ts(db, tmp_path):
    t = _open(db, tmp_path)
    yield t
    t.close()


def test_tool_names_and_arguments_never_take_paths_or_patients():
    specs = {s.name: s for s in CxrToolset.tool_specs()}
    assert set(specs) == {"cxr_studies", "cxr_classify", "cxr_compare"}
    assert specs["cxr_studies"].parameters["properties"] == {}
    assert set(specs["cxr_classify"].parameters["properties"]) == {"study_id"}
    assert set(specs["cxr_compare"].parameters["properties"]) == {"study_id_a", "study_id_b"}


def test_studies_lists_only_this_patients_studies_up_to_the_cutoff(ts):
    ep = episode()
    ts.bind(ep)
    out = ts.cxr_studies(ep)
    for sid in ("501", "502", "504", "505", "507"):
        assert f"\n{sid} |" in out
    assert "503" not in out  # after the prediction time
    assert "601" not in out  # another patient's
    assert "502 | 2150-01-05 09:30 | AP, LATERAL | 2" in out
    assert out.index("501 |") < out.index("502 |")  # oldest first


def test_studies_named_by_the_task_are_marked(ts):
    from clinseek.toolsets import Binding, Episode

    ep = Episode(binding=Binding(qid="q", subject_id=10, hadm_id=None, prediction_time=CUTOFF, study_ids=(502,)),
                 task=None)
    ts.bind(ep)
    out = ts.cxr_studies(ep)
    assert "502 | 2150-01-05 09:30 | AP, LATERAL | 2 (named in the task)" in out
    assert out.count("named in the task") == 1


def test_an_inference_failure_is_an_error_observation(ts, monkeypatch):
    ep = episode()
    ts.bind(ep)

    def boom(batch):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(ts.batcher, "run_batch", boom)
    with pytest.raises(ToolError, match="model failed on study 504: RuntimeError: CUDA out of memory"):
        ts.cxr_classify(ep, study_id=504)


def test_strict_cutoff_drops_a_study_taken_at_the_prediction_time(db, tmp_path):
    t = _open(db, tmp_path, cutoff="strict")
    try:
        ep = episode()
        t.bind(ep)
        assert "\n504 |" not in t.cxr_studies(ep)
        with pytest.raises(ToolError, match="not found"):
            t.cxr_classify(ep, study_id=504)
    finally:
        t.close()


@pytest.mark.parametrize("sid", [503, 601, "999", "s601", "../files"])
def test_other_patients_future_and_unknown_studies_are_not_found(ts, sid):
    ep = episode()
    ts.bind(ep)
    with pytest.raises(ToolError, match="not found.*cxr_studies"):
        ts.cxr_classify(ep, study_id=sid)


def test_a_later_prediction_time_widens_the_view_and_only_the_binding_can(ts):
    late = episode(when=datetime(2150, 3, 1))
    ts.bind(late)
    assert "\n503 |" in ts.cxr_studies(late)
    other = episode(subject_id=20)
    ts.bind(other)
    out = ts.cxr_studies(other)
    assert "\n601 |" in out and "501" not in out


def test_classify_reports_every_label_with_threshold_and_model(ts):
    ep = episode()
    ts.bind(ep)
    out = ts.cxr_classify(ep, study_id="502")
    card = ts.model.card
    assert f"model {card.name} v{card.version} on study 502" in out
    assert "(AP)" in out  # the frontal image is chosen over the lateral one
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if line.count(" | ") == 3}
    for label in card.labels:
        _, p, t, pos = rows[label]
        assert (float(p) >= float(t)) == (pos == "yes")
        assert float(t) == pytest.approx(card.threshold(label), abs=1e-3)
    assert rows["cardiomegaly"][3] == "yes"  # drawn with cardiomegaly; the phantom separates it (AUROC ~1)
    normal = ts.cxr_classify(ep, study_id=501)
    assert "cardiomegaly | " in normal and float(normal.split("cardiomegaly | ")[1].split(" |")[0]) < \
        float(rows["cardiomegaly"][1])


def test_a_lateral_only_study_is_classified_with_a_note(ts):
    ep = episode()
    ts.bind(ep)
    out = ts.cxr_classify(ep, study_id=508)
    assert "(LATERAL)" in out and "study 508 has no frontal image" in out and "meant for frontal views" in out
    assert "no frontal image" not in ts.cxr_classify(ep, study_id=502)
    assert "study 508 has no frontal image" in ts.cxr_compare(ep, study_id_a=501, study_id_b=508)


def test_compare_reports_change_between_two_studies(ts):
    ep = episode()
    ts.bind(ep)
    out = ts.cxr_compare(ep, study_id_a=501, study_id_b=502)
    assert "study 501 (2150-01-01 08:00) -> study 502 (2150-01-05 09:30, 4.1 days later)" in out
    line = next(x for x in out.splitlines() if x.startswith("cardiomegaly |"))
    assert "increased" in line and line.endswith("new")
    with pytest.raises(ToolError, match="two different studies"):
        ts.cxr_compare(ep, study_id_a=501, study_id_b="s501")
    with pytest.raises(ToolError, match="not found"):
        ts.cxr_compare(ep, study_id_a=501, study_id_b=601)


def test_corrupt_image_and_escaping_path_are_error_observations(ts):
    ep = episode()
    ts.bind(ep)
    with pytest.raises(ToolError, match="505: the image could not be read.*corrupt"):
        ts.cxr_classify(ep, study_id=505)
    with pytest.raises(ToolError, match="outside the image folder"):
        ts.cxr_classify(ep, study_id=506)
    assert "model" in ts.cxr_classify(ep, study_id=501)  # the toolset still works afterwards


def test_real_rg1_dicom_runs_through_the_tools(ts):
    ep = episode()
    ts.bind(ep)
    out = ts.cxr_classify(ep, study_id=507)
    assert "study 507" in out and out.count(" | ") >= 3 * 5
    assert "Error" not in out


def test_results_are_cached_by_model_and_image_hash_in_memory_and_on_disk(db, tmp_path):
    t = _open(db, tmp_path)
    ep = episode()
    t.bind(ep)
    first = t.cxr_classify(ep, study_id=501)
    n = sum(t.batcher.batches)
    assert t.cxr_classify(ep, study_id=501) == first
    assert sum(t.batcher.batches) == n and t.cache.hits >= 1
    t.close()
    files = list((tmp_path / "cache" / "cxr").rglob("*.json"))
    assert files and all(f.parent.name == t.model.sha256[:16] for f in files)
    t2 = _open(db, tmp_path)  # a new run: served from the disk cache, no inference
    try:
        t2.bind(ep)
        assert t2.cxr_classify(ep, study_id=501) == first
        assert t2.batcher.batches == []
    finally:
        t2.close()


def test_database_is_read_only_and_needs_cxr_metadata(ts, db, tmp_path):
    import duckdb

    with pytest.raises(duckdb.Error):
        ts._con.execute("CREATE TABLE x (a INTEGER)")
    with pytest.raises(duckdb.Error):
        ts._con.execute("SET enable_external_access = true")
    with pytest.raises(duckdb.Error):
        ts._con.execute("SELECT * FROM read_csv('/etc/passwd')")
    other = duckdb.connect(str(db), read_only=True)  # someone else opening the same file in-process still works
    assert other.execute("SELECT count(*) FROM cxr_metadata").fetchone()[0] > 0
    other.close()
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    t = CxrToolset(CxrConfig(database=str(empty), providers="cpu"), context(tmp_path))
    with pytest.raises(UserError, match="no cxr_metadata"):
        t.open()


def test_model_path_is_relative_to_the_recipe_folder(db, tmp_path):
    t = CxrToolset(CxrConfig(database=str(db), model="models/nope.yaml", providers="cpu"),
                   context(tmp_path, recipe_dir=tmp_path / "recipes"))
    with pytest.raises(UserError, match=r"model card not found: .*recipes/models/nope.yaml"):
        t.open()


def test_micro_batching_merges_concurrent_episodes_into_few_inference_calls(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    extra = [(100 + i, 9000 + i, datetime(2150, 1, 2), "PA", ("cardiomegaly",) if i % 2 else ())
             for i in range(16)]
    db = make_db(root, extra=extra)
    t = _open(db, tmp_path, max_batch=16, batch_wait_ms=300, disk_cache=False)
    try:
        episodes = [episode(subject_id=100 + i, qid=f"q{i}") for i in range(16)]
        for ep in episodes:
            t.bind(ep)
        start = threading.Barrier(16)

        def run(i):
            start.wait()
            return t.cxr_classify(episodes[i], study_id=9000 + i)

        with ThreadPoolExecutor(16) as pool:
            outs = list(pool.map(run, range(16)))
        assert sum(t.batcher.batches) == 16
        assert len(t.batcher.batches) <= 4  # one inference for many episodes, not sixteen
        # Batching changes no number: each result equals the image run alone.
        for i, out in enumerate(outs):
            assert f"study {9000 + i}" in out
        single = t.model.predict(np.stack([t.model.prepare(_pixels(root, 9000))]))[0]
        first = outs[0]
        p = float(first.split("cardiomegaly | ")[1].split(" |")[0])
        assert p == pytest.approx(single[0], abs=1e-3)
    finally:
        t.close()


def _pixels(root, study):
    from clinseek_cxr.images import load_image

    return load_image(next(root.rglob(f"s{study}/*.png"))).pixels


def test_manifest_records_the_providers_the_session_really_uses(ts):
    m = ts.manifest()
    assert m["providers"] == ts.model.session.get_providers() == ["CPUExecutionProvider"]
    assert m["sha256"] == ts.model.card.sha256 and m["model"] == ts.model.card.name


# Provider choice -----------------------------------------------------------------------------------------------
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@pytest.mark.parametrize("choice,available,want", [
    ("auto", [CUDA, CPU], [CUDA, CPU]),
    ("auto", ["AzureExecutionProvider", CPU], [CPU]),
    ("cpu", [CUDA, CPU], [CPU]),
    ("cuda", [CUDA, CPU], [CUDA, CPU]),
])
def test_choose_providers(choice, available, want):
    assert runtime.choose_providers(choice, available) == want


def test_cuda_without_cuda_is_a_user_error():
    with pytest.raises(UserError, match="gpu extra"):
        runtime.choose_providers("cuda", [CPU])


def test_when_cuda_is_claimed_but_falls_back_the_manifest_says_cpu(db, tmp_path, monkeypatch):
    """onnxruntime may list CUDA and still run on CPU (libraries missing): record what the session uses."""
    monkeypatch.setattr(runtime, "available_providers", lambda: [CUDA, CPU])
    requested = []
    import onnxruntime as ort

    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None):
        requested.append(list(providers))
        return real(path, sess_options=sess_options, providers=[CPU])  # what a CPU-only machine ends up with

    monkeypatch.setattr(ort, "InferenceSession", spy)
    t = CxrToolset(CxrConfig(database=str(db), providers="auto"), context(tmp_path))
    t.open()
    try:
        assert requested == [[CUDA, CPU]]
        assert t.manifest()["providers"] == [CPU]
    finally:
        t.close()
    t = CxrToolset(CxrConfig(database=str(db), providers="cuda"), context(tmp_path))
    with pytest.raises(UserError, match="fell back"):
        t.open()


def test_plugin_registers_the_toolset_and_the_commands():
    from clinseek.cli import cli
    from clinseek.plugins import get_registry

    assert get_registry().get("toolsets", "cxr") is CxrToolset
    import click

    ctx = click.Context(cli)
    assert {"models", "cxr"} <= set(cli.list_commands(ctx))
    assert {"check", "export"} <= set(cli.get_command(ctx, "models").commands)  # the llm plugin adds get, list


@pytest.mark.slow
def test_phantom_reads_the_demo_cohorts_studies(tmp_path):
    """End to end on the demo cohort (`database: demo:`): the tools find each patient's studies and the phantom's
    calls agree with the hidden labels far better than chance."""
    from types import SimpleNamespace

    import duckdb

    from clinseek_demo.demo import ensure_demo

    db = ensure_demo(patients=12, seed=2).db  # the same small demo the cohort tests build (cached per session)
    ctx = SimpleNamespace(recipe_dir=tmp_path, cache_dir=None, warn=lambda m: None)
    t = CxrToolset(CxrConfig(database="demo:patients=12,seed=2", providers="cpu", disk_cache=False), ctx)
    t.open()
    try:
        con = duckdb.connect(str(db), read_only=True)
        subjects = [r[0] for r in con.execute("SELECT DISTINCT subject_id FROM cxr_metadata").fetchall()]
        truth = {(str(s), lab): bool(p) for s, lab, p in
                 con.execute("SELECT study_id, label, present FROM cxr_labels").fetchall()}
        con.close()
        assert subjects
        agree = total = 0
        for subject in subjects:
            ep = episode(subject_id=subject, when=datetime(2300, 1, 1))
            t.bind(ep)
            for study in ep.state["studies"]:
                out = t.cxr_classify(ep, study_id=study)
                for line in out.splitlines():
                    parts = line.split(" | ")
                    if len(parts) == 4 and (study, parts[0]) in truth:
                        total += 1
                        agree += (parts[3] == "yes") == truth[(study, parts[0])]
        assert total >= 20
        assert agree / total > 0.85
    finally:
        t.close()
