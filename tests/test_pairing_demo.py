"""The paper's pairing, end to end through the CLI: the shipped demo recipes (seek and curated) on the same small
subset of demo tasks, then `clinseek compare`: paired by qid, with intervals; a run over other tasks is refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinseek.cli import main

ROOT = Path(__file__).resolve().parent.parent
# A small demo cohort (the one the ehr demo tests build) and two families the curated package can serve.
SMALL = ["--set", "tasks.with.patients=40",
         "--set", "tools.0.with.database=demo:patients=40,seed=7",
         "--set", "tools.2.with.database=demo:patients=40,seed=7",
         "--set", "tools.1.with.collections=[reference]",
         "--set", "tasks.filter.task=[mortality, diagnosis_ccsr]"]


def cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def apply(capsys, recipe: str, out: Path, limit: int) -> Path:
    code, _, err = cli(capsys, "apply", ROOT / "recipes" / recipe, "--out", out, "--limit", limit, "--quiet",
                       *SMALL)
    assert code == 0, err
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def results(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_demo_seek_and_curated_pair_and_compare(tmp_path, capsys):
    seek = apply(capsys, "demo.yaml", tmp_path / "seek", 12)
    curated = apply(capsys, "demo-curated.yaml", tmp_path / "curated", 12)
    a, b = results(seek), results(curated)
    assert len(a) == len(b) == 12
    assert {r["qid"] for r in a} == {r["qid"] for r in b}
    assert {r["task"] for r in a} == {"mortality", "diagnosis_ccsr"}
    assert all(r["status"] == "completed" for r in a + b)
    # seeking used data tools; curated answered from the package alone (finish only) and cited nothing
    assert all(r["tool_counts"].get("ehr_sql", 0) > 0 for r in a)
    assert all(not {k: v for k, v in (r["tool_counts"] or {}).items() if k != "finish"} for r in b)
    assert all(r["cited_evidence"] == [] and r["tool_calls"] == 0 for r in b)
    traj = [json.loads(x) for x in (curated / "trajectories.jsonl").read_text().splitlines()]
    assert len(traj) == 12
    for t in traj:
        said = " ".join(str(m.get("content") or "") for m in t["messages"] if m["role"] == "assistant")
        shown = " ".join(str(m.get("content") or "") for m in t["messages"] if m["role"] in ("system", "user"))
        assert "From the curated evidence package" in said
        assert "Events in the 24 h before" in shown            # the task's input, rendered into the prompt

    code, out, err = cli(capsys, "compare", seek, curated, "--resamples", 200, "--json", tmp_path / "cmp.json")
    assert code in (0, None), err
    assert "| mortality | 6 |" in out and "| diagnosis_ccsr | 6 |" in out
    assert "[" in out and "95%" in out                       # intervals, and what they are
    data = json.loads((tmp_path / "cmp.json").read_text())
    assert [r["evidence"] for r in data["runs"]] == ["seek", "curated"]
    iv = data["overall"]["diffs"][0]
    assert iv["low"] <= iv["diff"] <= iv["high"]

    # a run over a different limit is not the same task set: compare refuses it with a clear message
    short = apply(capsys, "demo-curated.yaml", tmp_path / "short", 8)
    code, _, err = cli(capsys, "compare", seek, short)
    assert code == 2 and "not over the same tasks" in err and "only in" in err
