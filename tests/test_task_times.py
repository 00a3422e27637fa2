"""One rule for time zones in prediction times, applied once in the Task model: EHR times are naive, a zero offset
is dropped, any other offset is refused. Every toolset, the prompt and the audit then read the same bound value."""
from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import ValidationError

from clinseek.prompts import prompt_context
from clinseek.tasks import JsonlTaskSource, MalformedTask, Task
from clinseek.toolsets import Binding, Episode
from clinseek_ehr.testing import PATIENT, make_fixture_db
from clinseek_ehr.toolset import EhrConfig, EhrToolset


def _row(when: str, subject_id=PATIENT) -> dict:
    return {"qid": "q1", "subject_id": subject_id, "prediction_time": when, "task": "t", "question": "?"}


@pytest.mark.parametrize("when", ["2180-05-06T07:45:00-12:00", "2180-05-06T12:00:00+02:00",
                                  "2180-05-06T12:00:00+00:30"])
def test_a_prediction_time_with_an_offset_is_refused(when):
    with pytest.raises(ValidationError, match="time-zone offset"):
        Task.model_validate(_row(when))


def test_the_task_file_names_the_line_of_an_offset(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(_row("2180-05-06T12:00:00")) + "\n" + json.dumps(_row("2180-05-06T07:45:00-12:00")))
    tasks = JsonlTaskSource({"path": path, "on_error": "fail"})
    with pytest.raises(MalformedTask) as err:
        list(tasks.iter_tasks())
    assert f"{path}:2" in err.value.render() and "offset" in err.value.render()


@pytest.mark.parametrize("when", ["2180-05-06T12:00:00Z", "2180-05-06T12:00:00+00:00", "2180-05-06T12:00:00"])
def test_zero_offset_and_naive_times_bind_the_same_naive_value(when):
    task = Task.model_validate(_row(when))
    assert task.prediction_time == datetime(2180, 5, 6, 12, 0) and task.prediction_time.tzinfo is None


def test_ehr_prompt_and_audit_read_the_same_bound_time(tmp_path):
    task = Task.model_validate(_row("2180-05-06T12:00:00Z"))
    binding = Binding.from_task(task)
    ts = EhrToolset(EhrConfig(database=str(make_fixture_db(tmp_path / "f.duckdb"))), None)
    ts.open()
    try:
        episode = Episode(binding=binding, task=task)
        ts.bind(episode)
        assert ts.episode_scope(episode).cutoff == datetime(2180, 5, 6, 12, 0)
        # The audit builds its SQL from the same binding value.
        assert "2180-05-06 12:00:00" in ts.scope.audit_sql("labevents", binding.subject_id, binding.prediction_time)
    finally:
        ts.close()
    recipe = type("R", (), {"name": "r", "description": ""})()
    assert prompt_context(task, [], recipe)["task"]["prediction_time"] == "2180-05-06T12:00:00"


def test_cxr_reads_the_same_bound_time(tmp_path):
    from test_cxr_fixtures import CUTOFF, context, episode, make_db
    from clinseek_cxr.toolset import CxrConfig, CxrToolset

    root = tmp_path / "site"
    root.mkdir()
    db = make_db(root, rg1=False)
    ts = CxrToolset(CxrConfig(database=str(db), model="phantom", providers="cpu"), context(tmp_path))
    ts.open()
    try:
        task = Task.model_validate(_row(CUTOFF.isoformat() + "Z", subject_id=10))
        ep = Episode(binding=Binding.from_task(task), task=task)
        ts.bind(ep)
        reference = episode()
        ts.bind(reference)
        assert ts.cxr_studies(ep) == ts.cxr_studies(reference)
    finally:
        ts.close()
