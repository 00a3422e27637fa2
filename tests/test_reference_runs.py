"""The reference system's own runs: re-scored (also exactly as its script scores), and imported as run directories
that score, report, compare and export. Fixtures are written here in the reference's shapes (not its data)."""
from __future__ import annotations

import json

import pytest

from clinseek.cli import main


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


BENCH = [
    {"qid": "Readmission_30day_1_11", "subject_id": 1, "hadm_id": 11, "prediction_time": "2150-01-01 10:00:00",
     "task": "Readmission_30day", "task_type": "risk_prediction", "question": "Readmitted within 30 days?",
     "candidates": ["yes", "no"], "label": "yes"},
    {"qid": "Readmission_30day_2_22", "subject_id": 2, "hadm_id": 22, "prediction_time": "2150-01-01 10:00:00",
     "task": "Readmission_30day", "task_type": "risk_prediction", "question": "Readmitted within 30 days?",
     "candidates": ["yes", "no"], "ground_truth": ["no"]},
    {"qid": "diagnoses_ccs_3_33", "subject_id": 3, "hadm_id": 33, "prediction_time": "2150-01-01 10:00:00",
     "task": "diagnoses_ccs", "task_type": "decision_making", "question": "Which diagnoses?",
     "label": [{"name": "Sepsis"}, {"name": "Pneumonia"}]},
    {"qid": "ehrxqa_test_7", "subject_id": 4, "prediction_time": "2105-12-31 23:59:00", "task": "ehrxqa_table",
     "task_family": "qa", "question": "how many?", "label": [{"name": "2", "value": 2}]},
    {"qid": "Readmission_30day_5_55", "subject_id": 5, "hadm_id": 55, "prediction_time": "2150-01-01 10:00:00",
     "task": "Readmission_30day", "task_type": "risk_prediction", "question": "?", "label": "no"},  # never run
]


def _finish(args, name="ehr.finish"):
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c9", "type": "function", "function": {"name": name, "arguments": args}}]}


def _conv(*tail):
    return [{"role": "system", "content": "You are ..."}, {"role": "user", "content": "Question ..."},
            {"role": "assistant", "content": "Looking.", "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "ehr.get_records_by_time", "arguments": '{"table_name": "labevents"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "ehr.get_records_by_time", "content": "charttime ..."},
            *tail]


RESULTS = [
    {"qid": "Readmission_30day_1_11", "messages": _conv(_finish('{"response": ["yes"]}')),
     "usage": {"prompt_tokens": 1000, "completion_tokens": 50}},
    {"qid": "Readmission_30day_1_11", "messages": _conv(_finish('{"response": "yes"}'))},
    {"qid": "Readmission_30day_2_22", "messages": _conv(_finish('{"response": ["yes"]}'))},
    {"qid": "Readmission_30day_2_22", "messages": _conv({"role": "assistant", "content": "I think no."})},
    {"qid": "diagnoses_ccs_3_33", "messages": _conv(_finish("{'response': ['Sepsis.', 'pneumonia']}"))},
    {"qid": "diagnoses_ccs_3_33", "messages": _conv(_finish('{"response": ["Sepsis"]}'))},
    {"qid": "ehrxqa_test_7", "messages": _conv(_finish('{"response": ["2"]}'))},
]
# By hand. clinseek (punctuation normalised): per question F1 1, 0, (1 + 2/3) / 2, 1; macro over the three tasks
# (0.5 + 5/6 + 1) / 3. The reference script (lower-case only: "sepsis." is not "sepsis"): the diagnoses question
# scores (0.5 + 2/3) / 2; micro over the 4 questions with results (of 5 in the benchmark).
MACRO = (0.5 + 5 / 6 + 1) / 3
STRICT = (1 + 0 + (0.5 + 2 / 3) / 2 + 1) / 4


@pytest.fixture
def files(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps(BENCH, indent=2))
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RESULTS))
    return tmp_path


def test_reference_results_rescore_with_label_objects_and_strict_numbers(files, capsys):
    code, out, err = run_cli(capsys, "score", str(files / "results.jsonl"), "--reference", "--benchmark",
                             str(files / "bench.json"), "--strict-reference", "--json")
    assert code == 0, err
    scores = json.loads(out)
    assert scores["overall"]["f1"] == pytest.approx(MACRO)
    assert scores["per_task"]["ehrxqa_table"]["f1"] == 1.0   # {"name": "2", "value": 2} scored by name
    strict = scores["strict_reference"]
    assert strict["f1"] == pytest.approx(STRICT) and strict["f1"] != pytest.approx(scores["overall"]["f1_micro"])
    assert (strict["questions_done"], strict["questions_total"], strict["runs"]) == (4, 5, 7)
    assert strict["per_task"]["diagnoses_ccs"]["f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert scores["overall"]["tool_calls_avg"] == pytest.approx(13 / 7)   # 1 lookup each, 6 finish calls
    assert scores["overall"]["turns_avg"] == pytest.approx(2.0)


def test_the_table_sets_the_reference_number_beside_ours(files, capsys):
    code, out, _ = run_cli(capsys, "score", str(files / "results.jsonl"), "--benchmark", str(files / "bench.json"),
                           "--strict-reference", "--no-write")
    assert code == 0
    assert f"{STRICT * 100:.1f}" in out and f"macro F1 {MACRO * 100:.1f}" in out
    assert "tools" in out.splitlines()[0] and "tokens" in out.splitlines()[0]


def test_a_reference_file_without_the_flag_is_recognised_not_scored_as_zeros(files, capsys):
    code, out, err = run_cli(capsys, "score", str(files / "results.jsonl"), "--benchmark",
                             str(files / "bench.json"), "--json", "--no-write")
    assert code == 0 and "reference system's results format" in err
    assert json.loads(out)["overall"]["f1"] == pytest.approx(MACRO)


def test_empty_results_exit_2(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text("")
    code, _, err = run_cli(capsys, "score", str(tmp_path))
    assert code == 2 and "nothing to score" in err


def test_import_makes_a_run_that_scores_reports_compares_and_exports(files, capsys):
    run = files / "imported"
    code, out, err = run_cli(capsys, "import", "reference", str(files / "results.jsonl"), "--benchmark",
                             str(files / "bench.json"), "--out", str(run))
    assert code == 0, err
    assert "imported 7 episodes of 4 questions" in out
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["imported_from"] == "reference" and len(manifest["source"]["results_sha256"]) == 64
    assert manifest["counts"] == {"completed": 6, "error": 1}
    traj = [json.loads(x) for x in (run / "trajectories.jsonl").read_text().splitlines()]
    tool_msgs = [m for m in traj[0]["messages"] if m["role"] == "tool"]
    assert tool_msgs[0]["evidence_id"] == "E1" and traj[0]["evidence"]["E1"]["tool"] == "ehr.get_records_by_time"
    assert traj[0]["evidence"]["E1"]["arguments"] == {"table_name": "labevents"}
    assert traj[0]["task"]["label"] == ["yes"] and traj[0]["result"]["usage"]["input_tokens"] == 1000
    assert traj[4]["messages"][-1]["tool_calls"][0]["arguments"] == {"response": ["Sepsis.", "pneumonia"]}

    code, out, err = run_cli(capsys, "score", str(run), "--json")
    assert code == 0, err
    assert json.loads(out)["overall"]["f1"] == pytest.approx(MACRO)
    code, out, err = run_cli(capsys, "report", str(run))
    assert code == 0 and (run / "report.html").stat().st_size > 1000, err
    code, out, err = run_cli(capsys, "export", str(run), "--format", "openai", "--out", str(files / "export"))
    assert code == 0, err
    # the run without a finish call is not training data; two questions' first runs are the same conversation
    assert "kept 5 of 7" in out and "not_completed 1" in out and "duplicate 1" in out
    rows = [json.loads(x) for f in (files / "export").rglob("*.jsonl") for x in f.read_text().splitlines()]
    assert rows and any("ehr.get_records_by_time" in json.dumps(r) for r in rows)

    other = files / "imported-again"
    assert run_cli(capsys, "import", "reference", str(files / "results.jsonl"), "--benchmark",
                   str(files / "bench.json"), "--out", str(other))[0] == 0
    code, out, err = run_cli(capsys, "compare", str(run), str(other))
    assert code == 0, err
    overall = next(line for line in out.splitlines() if "overall" in line)
    assert f"{MACRO:.3f}" in overall and "+0.000" in overall


def test_import_never_writes_over_a_run_and_names_bad_rows(files, capsys):
    run = files / "imported"
    assert run_cli(capsys, "import", "reference", str(files / "results.jsonl"), "--benchmark",
                   str(files / "bench.json"), "--out", str(run))[0] == 0
    code, _, err = run_cli(capsys, "import", "reference", str(files / "results.jsonl"), "--out", str(run))
    assert code == 2 and "not empty" in err
    bad = files / "bad.jsonl"
    bad.write_text(json.dumps(RESULTS[0]) + "\n" + json.dumps({"qid": "x"}) + "\n")
    code, out, err = run_cli(capsys, "import", "reference", str(bad), "--benchmark", str(files / "bench.json"),
                             "--out", str(files / "partial"))
    assert code == 0 and f"{bad}:2" in err and "1 row(s) skipped" in out
