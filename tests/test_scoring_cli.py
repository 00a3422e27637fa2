"""`clinseek score | report | export` through the real CLI entry point."""
import json

import pytest

from clinseek.cli import main
from clinseek.report.sample import write_sample_run


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_score_prints_table_and_writes_scores_json(tmp_path, capsys):
    run = write_sample_run(tmp_path / "run")
    code, out, err = _run(["score", str(run)], capsys)
    assert code == 0
    assert "overall (macro over tasks)" in out and "diagnosis_ccsr" in out and "type: risk_prediction" in out
    scores = json.loads((run / "scores.json").read_text())
    assert scores["counts"]["runs"] == 8


def test_score_json_and_plugin_scorer(tmp_path, capsys):
    run = write_sample_run(tmp_path / "run")
    code, out, _ = _run(["score", str(run), "--json", "--no-write", "--scorer", "set_f1"], capsys)
    assert code == 0 and json.loads(out)["per_task"]["los_gt_3"]["f1"] == pytest.approx(0.5)
    assert not (run / "scores.json").exists()


def test_score_bad_input_exits_2_with_one_message(tmp_path, capsys):
    code, _, err = _run(["score", str(tmp_path)], capsys)
    assert code == 2 and "no results.jsonl" in err and "Traceback" not in err
    run = write_sample_run(tmp_path / "run")
    code, _, err = _run(["score", str(run), "--scorer", "set_f2"], capsys)
    assert code == 2 and "did you mean 'set_f1'" in err


def test_report_command(tmp_path, capsys):
    run = write_sample_run(tmp_path / "run")
    code, out, _ = _run(["report", str(run), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "r.html")
    assert "clinseek report" in (tmp_path / "r.html").read_text()


def test_export_command_filters_and_formats(tmp_path, capsys):
    run = write_sample_run(tmp_path / "run")
    code, out, _ = _run(["export", str(run), "-f", "sharegpt", "-f", "openai", "--min-score", "1"], capsys)
    assert code == 0
    assert "kept 4 of 8 episodes (dropped: not_completed 1, score 3)" in out
    assert len((run / "export" / "openai" / "openai.jsonl").read_text().splitlines()) == 4
    assert (run / "export" / "sharegpt" / "dataset_info.json").exists()
    code, _, err = _run(["export", str(run), "-f", "alpaca"], capsys)
    assert code == 2 and "unknown exporter 'alpaca'" in err


def test_score_reference_results_file(tmp_path, capsys):
    rows = [{"qid": "mortality_1_2", "label": ["yes"], "messages": [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "ehr.finish",
                                                         "arguments": json.dumps({"response": ["Yes"]})}}]}]}]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = _run(["score", str(path), "--reference", "--json"], capsys)
    assert code == 0 and json.loads(out)["per_task"]["mortality"]["f1"] == 1.0
    assert json.loads((tmp_path / "scores.json").read_text())["source"]["format"] == "reference"
