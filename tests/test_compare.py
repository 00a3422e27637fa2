"""Run comparison: pairing checks, the paired bootstrap on constructed data with known answers, the table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from clinseek.compare import compare_runs, to_html, to_markdown
from clinseek.errors import UserError
from clinseek.pairing import flips, paired_bootstrap


def write_run(path, rows, name="r", evidence="seek"):
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"recipe": {"name": name, "agent": {"evidence": evidence}},
                                                    "host": {"provider": "rules"}}))
    with (path / "results.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


def row(qid, task, answer, label, tools=None, task_type="risk_prediction"):
    return {"qid": qid, "run_index": 0, "task": task, "task_type": task_type, "answer": answer, "label": label,
            "candidates": ["yes", "no"], "status": "completed", "tool_counts": tools or {},
            "usage": {"input_tokens": 10, "output_tokens": 2}, "cost_usd": 0.001}


def test_bootstrap_matches_the_analytic_interval():
    # 200 questions, half improved by 1, half unchanged: mean 0.5, standard error sqrt(.25/200) = 0.0354.
    d = np.array([1.0] * 100 + [0.0] * 100)
    iv = paired_bootstrap({"t": d}, n_boot=4000, seed=1, macro=False)
    assert iv.diff == pytest.approx(0.5)
    assert iv.low == pytest.approx(0.5 - 1.96 * 0.0354, abs=0.015)
    assert iv.high == pytest.approx(0.5 + 1.96 * 0.0354, abs=0.015)
    assert iv.excludes_zero
    same = paired_bootstrap({"t": np.zeros(30)}, n_boot=500, seed=1)
    assert (same.low, same.high) == (0.0, 0.0) and not same.excludes_zero
    # Seeded: the same seed gives the same interval.
    assert paired_bootstrap({"t": d}, seed=7) == paired_bootstrap({"t": d}, seed=7)


def test_macro_bootstrap_weights_tasks_equally():
    iv = paired_bootstrap({"big": np.zeros(1000), "small": np.ones(10)}, n_boot=500, seed=0, macro=True)
    assert iv.diff == pytest.approx(0.5)


def test_flips_count_each_way():
    assert flips(np.array([1, 1, 0, 0, 1]), np.array([0, 1, 1, 0, 0])) == (2, 1)


def test_compare_constructed_runs(tmp_path):
    a_rows, b_rows = [], []
    for i in range(40):
        a_rows.append(row(f"m{i}", "mortality", ["yes"], ["yes"], {"ehr_sql": 2}))
        b_rows.append(row(f"m{i}", "mortality", ["no"] if i < 10 else ["yes"], ["yes"], {"ehr_sql": 1, "kb_search": 1}))
        a_rows.append(row(f"d{i}", "dx", ["a"], ["a", "b"], task_type="decision_making"))
        b_rows.append(row(f"d{i}", "dx", ["a"], ["a", "b"], task_type="decision_making"))
    a = write_run(tmp_path / "a", a_rows, "seek")
    b = write_run(tmp_path / "b", b_rows, "curated", evidence="curated")
    result = compare_runs([a, b], n_boot=1000, seed=3)
    mort = next(t for t in result["tasks"] if t["name"] == "mortality")
    assert mort["scores"] == [pytest.approx(1.0), pytest.approx(0.75)]
    d = mort["diffs"][0]
    assert d["diff"] == pytest.approx(-0.25) and d["significant"] and d["high"] < 0
    assert (d["flipped_to_wrong"], d["flipped_to_right"]) == (10, 0)
    dx = next(t for t in result["tasks"] if t["name"] == "dx")
    assert dx["diffs"][0]["diff"] == 0 and not dx["diffs"][0]["significant"]
    overall = result["overall"]
    assert overall["diffs"][0]["diff"] == pytest.approx(-0.125)
    assert result["runs"][1]["tools"]["tool_share"] == {"ehr_sql": 0.5, "kb_search": 0.5}
    assert result["runs"][0]["tools"]["calls_per_episode"] == pytest.approx(1.0)
    md = to_markdown(result)
    assert "| mortality | 40 | 1.000 | 0.750 | -0.250*" in md and "10/0" in md
    page = to_html(result)
    assert page.startswith("<!doctype html>") and "mortality" in page and "http" not in page.split("<main>")[1]


def test_different_task_sets_are_refused(tmp_path):
    a = write_run(tmp_path / "a", [row("q1", "t", ["yes"], ["yes"]), row("q2", "t", ["yes"], ["no"])])
    b = write_run(tmp_path / "b", [row("q1", "t", ["yes"], ["yes"]), row("q3", "t", ["yes"], ["no"])])
    with pytest.raises(UserError, match=r"not over the same tasks: 1 question\(s\) only in a \(e.g. q2\)"):
        compare_runs([a, b])
    c = write_run(tmp_path / "c", [row("q1", "t", ["yes"], ["no"]), row("q2", "t", ["yes"], ["no"])])
    with pytest.raises(UserError, match="different labels"):
        compare_runs([a, c])


def test_compare_command_prints_table_and_writes_html(tmp_path, capsys):
    from clinseek.cli import main

    a = write_run(tmp_path / "a", [row(f"q{i}", "t", ["yes"], ["yes"]) for i in range(5)])
    b = write_run(tmp_path / "b", [row(f"q{i}", "t", ["no"], ["yes"]) for i in range(5)])
    with pytest.raises(SystemExit) as info:
        main(["compare", str(a), str(b), "--html", str(tmp_path / "c.html"), "--resamples", "200"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "| t | 5 | 1.000 | 0.000 | -1.000*" in out
    assert (tmp_path / "c.html").read_text().count("<tr>") >= 4
    with pytest.raises(SystemExit) as info:
        main(["compare", str(a)])
    assert info.value.code == 2
