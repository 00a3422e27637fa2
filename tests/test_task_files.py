"""Task files as benchmarks publish them: JSONL or JSON arrays, labels in every shape, rows without `task`, and
recipes whose tasks cannot run (no task at all, a patient the database lacks) stopped before the first episode."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from clinseek.cli import main
from clinseek.errors import UserError
from clinseek.tasks import JsonlTaskSource, Task, label_names, task_from_qid
from clinseek_ehr.testing import CUTOFF, OTHER, PATIENT, make_fixture_db


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out + out.err


def _load(path, on_error="skip", warnings=None):
    ctx = type("Ctx", (), {"warn": staticmethod((warnings if warnings is not None else []).append)})()
    src = JsonlTaskSource({"path": path, "on_error": on_error}, ctx)
    return list(src.iter_tasks()), src.report


# Row shapes written for these tests in the shapes the reference benchmark releases (not its data).
MINIMAL = {"qid": "sample_text_001", "subject_id": "10000032", "prediction_time": "2150-12-01 10:00:00",
           "question": "Which risk label fits?", "candidates": ["low risk", "high risk"],
           "ground_truth": ["low risk"]}
QA_ROW = {"qid": "ehrxqa_test_12", "subject_id": 19000001, "hadm_id": 28000001, "stay_id": None,
          "prediction_time": "2105-12-24 17:30:11", "task": "ehrxqa_image_table", "task_family": "qa",
          "scope": "patient_scope", "question": "can you find costophrenic angle blunting?",
          "label": [{"name": "1", "value": 1}], "answer_type": "list", "source_benchmark": "ehrxqa",
          "source_split": "test", "db_path_hint": "database/patient_19000001.db", "modalities": ["ehr", "cxr_image"],
          "study_ids": [50000001, "50000002"], "dicom_ids": ["aaaa-bbbb"],
          "image_paths": ["files/p19/p19000001/s50000001/aaaa-bbbb.jpg"],
          "report_paths": ["reports/p19/p19000001/s50000001.txt"],
          "snapshot_spec": {"cutoff_time": "2105-12-24 17:30:11", "cxr_policy": "linked_studies_only"},
          "source_current_time": "2105-12-24 17:30:11"}
MED_ROW = {"qid": "medication_10000001_20000011", "subject_id": 10000001, "hadm_id": 20000011,
           "prediction_time": "2179-01-02 10:00:00", "task": "medication", "task_type": "decision_making",
           "question": "Which drug classes next?",
           "label": [{"name": "metoprolol", "atc_name": "beta blocking agents"},
                     {"name": "furosemide", "atc_name": "high-ceiling diuretics"}]}


def test_label_shapes_are_read_once_into_strings():
    assert label_names("Sepsis") == ["Sepsis"]
    assert label_names(["a", "b"]) == ["a", "b"]
    assert label_names([{"name": "2", "value": 2}]) == ["2"]
    assert label_names([{"name": "x", "atc_name": "X class"}, {"name": "y"}]) == ["X class"]
    assert label_names([3, 4.5]) == ["3", "4.5"]
    assert label_names({"name": "yes"}) == ["yes"]
    assert label_names(None) == []


def test_multimodal_row_keeps_every_field_and_scores_by_name():
    task = Task.model_validate(QA_ROW)
    assert task.label == ["1"] and task.label_raw == [{"name": "1", "value": 1}]
    assert task.stay_id is None and task.task_family == "qa" and task.answer_type == "list"
    assert task.scope == "patient_scope" and task.modalities == ["ehr", "cxr_image"]
    assert task.study_ids == [50000001, 50000002] and task.dicom_ids == ["aaaa-bbbb"]
    assert task.report_paths == ["reports/p19/p19000001/s50000001.txt"]
    assert task.snapshot_spec["cxr_policy"] == "linked_studies_only"
    assert (task.source_benchmark, task.source_split) == ("ehrxqa", "test")
    assert task.source_current_time == "2105-12-24 17:30:11" and task.extra == {"db_path_hint": "database/patient_19000001.db"}
    view = task.public_view()
    assert "label" not in view and "label_raw" not in view and "value" not in json.dumps(view)
    assert view["snapshot_spec"]["cutoff_time"] == "2105-12-24 17:30:11"


def test_atc_labels_score_by_atc_name():
    task = Task.model_validate(MED_ROW)
    assert task.label == ["beta blocking agents", "high-ceiling diuretics"]


def test_minimal_row_takes_its_task_from_the_qid_and_ids_become_integers():
    task = Task.model_validate(MINIMAL)
    assert task.task == "sample_text" and task.task_from == "qid"
    assert task.subject_id == 10000032 and task.label == ["low risk"]
    assert task_from_qid("Readmission_30day_10000032_22595853") == "Readmission_30day"
    assert task_from_qid("ehrxqa_test_7") == "ehrxqa_test" and task_from_qid("q-seven") is None
    fam = Task.model_validate({**MINIMAL, "qid": "row-a", "task_family": "qa"})
    assert fam.task == "qa" and fam.task_from == "task_family"
    with pytest.raises(ValueError):
        Task.model_validate({**MINIMAL, "qid": "row-a"})   # neither task, a qid pattern nor a family


def test_a_json_array_is_read_by_content_whatever_the_extension(tmp_path):
    path = tmp_path / "bench.jsonl"   # an array in a .jsonl file, pretty-printed over many lines
    path.write_text(json.dumps([QA_ROW, MED_ROW, MINIMAL], indent=2))
    warnings: list[str] = []
    tasks, report = _load(path, warnings=warnings)
    assert [t.qid for t in tasks] == ["ehrxqa_test_12", "medication_10000001_20000011", "sample_text_001"]
    assert report.loaded == 3 and report.malformed == 0 and report.inferred == {"qid": 1}
    assert len([w for w in warnings if "without `task`" in w]) == 1   # said once, not per row

    lines = tmp_path / "bench.json"   # JSON Lines in a .json file
    lines.write_text("\n".join(json.dumps(r) for r in (QA_ROW, MED_ROW)) + "\n")
    assert [t.task for t in _load(lines)[0]] == ["ehrxqa_image_table", "medication"]

    mapping = tmp_path / "by_qid.json"   # {qid: row}
    mapping.write_text(json.dumps({"a": QA_ROW, "b": MED_ROW}))
    assert len(_load(mapping)[0]) == 2
    single = tmp_path / "one.json"
    single.write_text(json.dumps(QA_ROW, indent=2))
    assert [t.qid for t in _load(single)[0]] == ["ehrxqa_test_12"]


def test_a_bad_row_of_an_array_is_named_by_its_line_and_counted(tmp_path):
    rows = [QA_ROW, {k: v for k, v in MED_ROW.items() if k != "question"}, "not an object", MINIMAL]
    path = tmp_path / "bench.json"
    text = json.dumps(rows, indent=2)
    path.write_text(text)
    bad_line = text.splitlines().index('  {', 1 + text.splitlines().index('  {')) + 1   # the 2nd row's opening
    warnings: list[str] = []
    tasks, report = _load(path, warnings=warnings)
    assert [t.qid for t in tasks] == ["ehrxqa_test_12", "sample_text_001"]
    assert report.malformed == 2 and report.loaded == 2
    assert f"bench.json:{bad_line}:" in report.problems[0] and "question" in report.problems[0]
    assert "JSON object" in report.problems[1]
    with pytest.raises(UserError, match=f"bench.json:{bad_line}"):
        _load(path, on_error="fail")


def test_a_broken_array_stops_with_the_place(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text('[\n  {"qid": "a",\n   "subject_id": 1\n  \n')
    with pytest.raises(UserError) as err:
        _load(path)
    assert "not valid JSON" in err.value.message and err.value.where.startswith(f"{path}:")


def test_many_bad_lines_warn_three_times_then_count(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps({"qid": f"x{i}"}) + "\n" for i in range(40)))
    warnings: list[str] = []
    tasks, report = _load(path, warnings=warnings)
    assert tasks == [] and report.malformed == 40 and len(warnings) == 4 and "37 more" in warnings[-1]


# Recipes whose tasks cannot run ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("taskfiles")
    make_fixture_db(d / "fixture.duckdb")
    return d


def _recipe(d, rows, name="recipe.yaml", raw=None):
    (d / "tasks.json").write_text(raw if raw is not None else json.dumps(rows, indent=1))
    (d / name).write_text(
        "clinseek: 1\nname: taskfiles\nhost: {provider: rules}\n"
        "tools:\n  - use: ehr\n    with: {database: fixture.duckdb}\n"
        "tasks: {source: jsonl, path: tasks.json}\noutput: {dir: runs}\n")
    return d / name


def _row(qid, pid, hadm=None, days=0):
    return {"qid": qid, "subject_id": pid, "hadm_id": hadm, "task": "demo", "question": "?",
            "prediction_time": (CUTOFF + timedelta(days=days)).isoformat(), "candidates": ["yes", "no"],
            "label": "no"}


def test_a_recipe_whose_rows_are_all_malformed_fails_validate_and_apply(site, capsys):
    recipe = _recipe(site, [{"qid": "a", "subject_id": 1}, {"qid": "b", "question": "?"}])
    code, out = run_cli(capsys, "validate", str(recipe))
    assert code == 2, out
    assert "gave no task" in out and "tasks.json:2:" in out and "prediction_time" in out
    code, out = run_cli(capsys, "apply", str(recipe), "--out", str(site / "runs"))
    assert code == 2 and "gave no task" in out
    assert not (site / "runs").exists()   # nothing was started


def test_a_missing_patient_or_admission_fails_before_the_first_episode(site, capsys):
    rows = [_row("ok", PATIENT, 20000012), _row("nobody", 99999999), _row("foreign_adm", PATIENT, 20000021),
            _row("no_adm", OTHER, 77777777)]
    recipe = _recipe(site, rows)
    code, out = run_cli(capsys, "validate", str(recipe))
    assert code == 2, out
    assert "3 of 4 task(s)" in out and "patient 99999999 is not in patients" in out
    assert "admission 20000021 belongs to another patient" in out
    assert "admission 77777777 is not in admissions" in out
    code, out = run_cli(capsys, "apply", str(recipe), "--out", str(site / "runs-fail"))
    assert code == 2 and "tasks.missing_patient: skip" in out, out
    assert not any((site / "runs-fail").glob("*/results.jsonl"))   # the run did not start

    code, out = run_cli(capsys, "apply", str(recipe), "--out", str(site / "runs-skip"),
                        "--set", "tasks.missing_patient=skip")
    assert code == 0, out
    run = next((site / "runs-skip").iterdir())
    qids = [json.loads(x)["qid"] for x in (run / "results.jsonl").read_text().splitlines()]
    assert qids == ["ok"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["tasks_missing_patient"] == 3 and manifest["task_count"] == 1


def test_audit_counts_tasks_it_could_not_audit(site, capsys):
    recipe = _recipe(site, [_row("ok", PATIENT), _row("nobody", 99999999)], name="audit.yaml")
    with pytest.raises(SystemExit) as info:
        main(["audit", str(recipe), "--json"])
    assert info.value.code == 1
    out = json.loads(capsys.readouterr().out)
    assert out["missing_patients"] == 1 and out["violations"] == 0 and out["tasks"] == 1
    assert "nobody" in out["missing_examples"]
