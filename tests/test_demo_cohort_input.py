"""The task rows' `input` (curated evidence package): every task has one, inside its window and cap, and no masked
value of the future leaks into it."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import duckdb
import pytest
from click.testing import CliRunner

from clinseek_demo.benchmark import ALL_TASKS, add_inputs, build_tasks
from clinseek_demo.build import build_cohort
from clinseek_demo.cli import data
from clinseek.tasks import Task
from clinseek.toolsets import Binding
from clinseek_ehr.curate import curated_events
from clinseek_ehr.toolset import EhrConfig, EhrToolset

EVENT = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) ([a-z_]+): ")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("input")
    build_cohort(out, patients=30, seed=5, images=False)
    build_tasks(out / "cohort.duckdb", out / "tasks.jsonl", per_task=3, seed=5)
    rows = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    return out, rows


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s)


def events(text: str) -> list[tuple[datetime, str]]:
    out = []
    for line in text.splitlines()[1:]:
        m = EVENT.match(line)
        if m:
            out.append((_t(m.group(1)), m.group(2)))
    return out


def test_every_task_has_an_input_headed_by_its_window(built):
    _, rows = built
    assert {r["task"] for r in rows} >= set(ALL_TASKS) - {"cxr_change"}  # a small cohort may have no pairs
    for r in rows:
        assert isinstance(r.get("input"), str) and r["input"], r["qid"]
        cutoff = _t(r["prediction_time"])
        assert r["input"].startswith(f"Events in the 24 h before {cutoff:%Y-%m-%d %H:%M}"), r["qid"]
        assert Task.model_validate(r).input == r["input"]
    # the packages are the patient's own: risk rows have at least the admission itself in a 24 h window
    assert sum(bool(events(r["input"])) for r in rows) >= len(rows) * 0.9


def test_input_events_are_inside_the_window_and_the_cap(built):
    _, rows = built
    for r in rows:
        cutoff = _t(r["prediction_time"])
        evs = events(r["input"])
        assert len(evs) <= 100
        assert len(evs) == len(r["input"].splitlines()) - 1 or "(no events" in r["input"]
        for when, _table in evs:
            assert cutoff - timedelta(hours=24) <= when <= cutoff, (r["qid"], when)
    # the cap bites on busy ICU patients, and says so
    capped = [r for r in rows if "more not shown" in r["input"].splitlines()[0]]
    assert capped and all(len(events(r["input"])) == 100 for r in capped)


def test_no_masked_future_value_appears(built):
    out, rows = built
    con = duckdb.connect(str(out / "cohort.duckdb"), read_only=True)
    adm = {h: (d, x) for h, d, x in con.execute("SELECT hadm_id, dischtime, deathtime FROM admissions").fetchall()}
    con.close()
    for r in rows:
        disch, death = adm[r["hadm_id"]]
        text = r["input"]
        # the current admission's discharge (and death) time is after the cutoff: it must not show in any form
        assert f"{disch:%Y-%m-%d %H:%M}" not in text, r["qid"]
        if death is not None:
            assert f"{death:%Y-%m-%d %H:%M}" not in text, r["qid"]
        # columns that only the end of the stay reveals (an earlier, finished ICU stay may show its outtime)
        for masked in ("dischtime", "deathtime", "discharge_location", "hospital_expire_flag", "dod"):
            assert not re.search(rf"(?<![a-z_]){masked}=", text), (r["qid"], masked)


def test_input_is_the_ehr_curators_package(built):
    out, rows = built
    toolset = EhrToolset(EhrConfig(database=str(out / "cohort.duckdb")), None)
    toolset.open()
    try:
        for r in rows[:: max(1, len(rows) // 6)]:
            b = Binding.from_task(Task.model_validate(r))
            assert r["input"] == curated_events(toolset, b, window_hours=24, max_events=100)
    finally:
        toolset.close()


def test_inputs_are_deterministic_across_thread_counts(built):
    out, rows = built
    some = [{k: v for k, v in r.items() if k != "input"} for r in rows[:12]]
    again = [dict(r) for r in some]
    add_inputs(out / "cohort.duckdb", some, workers=1)
    add_inputs(out / "cohort.duckdb", again, workers=4)
    assert [r["input"] for r in some] == [r["input"] for r in again] == [r["input"] for r in rows[:12]]


def test_add_inputs_window_and_cap_arguments(built):
    out, rows = built
    busy = next(r for r in rows if "more not shown" in r["input"].splitlines()[0])
    few = [{k: v for k, v in busy.items() if k != "input"}]
    add_inputs(out / "cohort.duckdb", few, window_hours=2, max_events=5, workers=1)
    head, *lines = few[0]["input"].splitlines()
    assert head.startswith("Events in the 2 h before") and len(lines) <= 5
    cutoff = _t(busy["prediction_time"])
    assert all(cutoff - timedelta(hours=2) <= when <= cutoff for when, _ in events(few[0]["input"]))


def test_cli_tasks_writes_or_skips_input(built, tmp_path):
    out, _ = built
    runner = CliRunner()
    db = str(out / "cohort.duckdb")
    res = runner.invoke(data, ["tasks", db, "--out", str(tmp_path / "a.jsonl"), "--task", "mortality",
                               "--per-task", "2"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert rows and all(r["input"].startswith("Events in the 24 h") for r in rows)
    res = runner.invoke(data, ["tasks", db, "--out", str(tmp_path / "b.jsonl"), "--task", "mortality",
                               "--per-task", "2", "--no-input"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert rows and all("input" not in r for r in rows)
