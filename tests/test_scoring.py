import json

import pytest

from clinseek.errors import UserError
from clinseek.report.sample import write_sample_run
from clinseek.scoring import (format_table, load_reference_results, normalise, reference_answer, score_rows,
                              score_run, set_prf)
from clinseek.scorers import BUILTIN_SCORERS, SetF1Scorer


def test_normalise_case_whitespace_punctuation():
    assert normalise("  Acute   Kidney-Failure. ") == "acute kidney failure"
    assert normalise("YES!") == "yes"
    assert normalise("heart_failure") == "heart failure"
    assert normalise(None) == ""


@pytest.mark.parametrize("answer,label,expected", [
    (["a", "b"], ["a", "b"], (1.0, 1.0, 1.0)),
    (["a", "b", "c"], ["a", "d"], (1 / 3, 0.5, 0.4)),
    ([], ["a"], (0.0, 0.0, 0.0)),
    (["x"], ["a"], (0.0, 0.0, 0.0)),
    (["A.", "a", " a "], ["a"], (1.0, 1.0, 1.0)),  # duplicates after normalising count once
    (["a"], [], (0.0, 0.0, 0.0)),
])
def test_set_prf(answer, label, expected):
    assert set_prf(answer, label) == pytest.approx(expected)


def _row(qid, task, answer, label, run_index=0, task_type="t", candidates=None, status="completed"):
    return {"qid": qid, "task": task, "task_type": task_type, "answer": answer, "label": label,
            "run_index": run_index, "candidates": candidates or [], "status": status}


def test_runs_averaged_per_question_then_questions_per_task_then_macro_over_tasks():
    rows = [
        # task A: q1 runs F1 1 and 0 -> 0.5; q2 F1 1 -> task A = 0.75
        _row("q1", "A", ["x"], ["x"], 0), _row("q1", "A", ["y"], ["x"], 1), _row("q2", "A", ["z"], ["z"]),
        # task B: one question F1 0 -> task B = 0
        _row("q3", "B", ["x"], ["y"], task_type="u"),
    ]
    s = score_rows(rows)
    assert s["per_task"]["A"]["f1"] == pytest.approx(0.75)
    assert s["per_task"]["B"]["f1"] == 0.0
    assert s["overall"]["f1"] == pytest.approx(0.375)  # macro: (0.75 + 0) / 2
    assert s["overall"]["f1_micro"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert s["per_task_type"]["t"]["f1"] == pytest.approx(0.75)
    assert s["counts"] == {"questions": 3, "runs": 4, "completed": 4, "tasks": 2, "task_types": 2}


def test_yes_no_accuracy_only_for_yes_no_tasks_and_exact_match():
    rows = [
        _row("m1", "mortality", ["yes"], ["yes"], candidates=["yes", "no"]),
        _row("m2", "mortality", ["no"], ["yes"], candidates=["yes", "no"]),
        _row("d1", "dx", ["a", "b"], ["a", "b"]),
        _row("d2", "dx", ["a"], ["a", "b"]),
    ]
    s = score_rows(rows)
    assert s["per_task"]["mortality"]["yes_no_accuracy"] == 0.5
    assert s["per_task"]["dx"]["yes_no_accuracy"] is None
    assert s["per_task"]["dx"]["exact_match"] == 0.5
    assert s["overall"]["yes_no_accuracy"] == 0.5


def test_score_run_writes_scores_json_and_counts_unfinished_as_zero(tmp_path):
    run = write_sample_run(tmp_path / "run")
    s = score_run(run)
    on_disk = json.loads((run / "scores.json").read_text())
    assert on_disk["overall"] == pytest.approx(s["overall"])
    # los_gt_3: one run budget-exhausted (answer []) and one correct -> 0.5
    assert s["per_task"]["los_gt_3"]["f1"] == pytest.approx(0.5)
    assert s["per_task"]["los_gt_3"]["completed"] == 1
    # mortality: q1 runs 1,0 -> .5 ; q2 "yes" and "Yes." both right -> 1 ; mean .75
    assert s["per_task"]["mortality"]["f1"] == pytest.approx(0.75)
    # diagnosis: run0 {septicemia, heart failure, pneumonia} vs 3 labels -> p=2/3 r=2/3 f1=2/3;
    # run1 {septicemia} -> p=1 r=1/3 f1=.5
    assert s["per_task"]["diagnosis_ccsr"]["f1"] == pytest.approx((2 / 3 + 0.5) / 2)
    table = format_table(s)
    assert "diagnosis_ccsr" in table and "overall (macro over tasks)" in table


def test_score_run_without_results_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no results.jsonl"):
        score_run(tmp_path)


def test_torn_last_line_is_skipped(tmp_path):
    run = write_sample_run(tmp_path / "run")
    with (run / "results.jsonl").open("a") as fh:
        fh.write('{"qid": "half')
    warnings = []
    s = score_run(run, warn=warnings.append)
    assert s["counts"]["runs"] == 8 and warnings


def _reference_row(qid, response, label=None, args_as="json"):
    args = {"response": response}
    raw = json.dumps(args) if args_as == "json" else repr(args)
    row = {"qid": qid, "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "ehr_run_sql_query", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "rows"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "ehr.finish", "arguments": raw}}]},
    ]}
    if label is not None:
        row["label"] = label
    return row


def test_reference_results_rescored_with_the_same_code(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [_reference_row("mortality_1_2", ["Yes"], ["yes"]),
            _reference_row("mortality_1_2", ["no"], ["yes"], args_as="python"),
            _reference_row("diagnoses_ccs_5_6", ["Sepsis", "AKI"], [{"name": "Sepsis"}, {"name": "CHF"}])]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = load_reference_results(path)
    assert [r["run_index"] for r in loaded] == [0, 1, 0]
    assert loaded[0]["task"] == "mortality" and loaded[2]["task"] == "diagnoses_ccs"
    assert loaded[2]["label"] == ["Sepsis", "CHF"]
    assert loaded[0]["tool_counts"] == {"ehr_run_sql_query": 1, "ehr.finish": 1}
    s = score_run(path, reference=True)
    assert s["per_task"]["mortality"]["f1"] == pytest.approx(0.5)
    assert s["per_task"]["diagnoses_ccs"]["f1"] == pytest.approx(0.5)
    assert (tmp_path / "scores.json").exists()


def test_reference_labels_from_benchmark_file(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_reference_row("q9", ["no"])) + "\n")
    with pytest.raises(UserError, match="no label"):
        load_reference_results(path)
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"qid": "q9", "task": "readmission_30d", "task_type": "risk_prediction",
                                 "label": ["no"], "candidates": ["yes", "no"]}) + "\n")
    rows = load_reference_results(path, benchmark=bench)
    assert rows[0]["task"] == "readmission_30d"
    assert score_rows(rows)["per_task"]["readmission_30d"]["yes_no_accuracy"] == 1.0


def test_reference_answer_without_finish_and_unparseable():
    assert reference_answer([{"role": "assistant", "content": "hi"}]) == ([], "no_prediction")
    bad = [{"role": "assistant", "tool_calls": [{"function": {"name": "finish", "arguments": "{not json"}}]}]
    assert reference_answer(bad) == ([], "finish_parse_error")
    canonical = [{"role": "assistant", "tool_calls": [{"name": "finish", "arguments": {"answer": ["a"]}}]}]
    assert reference_answer(canonical) == (["a"], "finish_tool_call")


def test_set_f1_scorer_is_builtin():
    assert SetF1Scorer in BUILTIN_SCORERS
    out = SetF1Scorer().score(["A"], {"label": ["a", "b"], "candidates": []})
    assert out["f1"] == pytest.approx(2 / 3) and "yes_no_correct" not in out
