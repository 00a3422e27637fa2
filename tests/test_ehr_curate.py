"""The curator: the bound patient's recent events, same scoping and masking as the tools."""
from __future__ import annotations

from datetime import timedelta

import pytest

from clinseek.toolsets import Binding
from clinseek_ehr.curate import curated_events
from clinseek_ehr.testing import CUTOFF, OTHER, PATIENT, make_fixture_db
from clinseek_ehr.toolset import EhrConfig, EhrToolset
from test_ehr_tools import leaks


@pytest.fixture(scope="module")
def toolset(tmp_path_factory):
    db = make_fixture_db(tmp_path_factory.mktemp("curate") / "fixture.duckdb")
    ts = EhrToolset(EhrConfig(database=str(db)), None)
    ts.open()
    yield ts
    ts.close()


def binding(pid=PATIENT, cutoff=CUTOFF) -> Binding:
    return Binding(qid="q", subject_id=pid, hadm_id=None, prediction_time=cutoff)


def test_recent_events_newest_first_with_labels(toolset):
    text = curated_events(toolset, binding(), window_hours=48, max_events=100)
    lines = text.splitlines()
    assert lines[0].startswith("Events in the 48 h before 2180-05-06 12:00")
    assert lines[1].startswith("2180-05-06 12:00 labevents: Potassium")      # itemid resolved to its label
    times = [line[:16] for line in lines[1:]]
    assert times == sorted(times, reverse=True)
    assert "Heart Rate" in text and "Vancomycin PAST" in text
    assert not leaks(text)


def test_window_and_max_events(toolset):
    short = curated_events(toolset, binding(), window_hours=6, max_events=100)
    assert "2180-05-06 08:00 chartevents" in short and "2180-05-05" not in short
    few = curated_events(toolset, binding(), window_hours=48, max_events=2)
    assert len(few.splitlines()) == 3 and "more not shown" in few.splitlines()[0]


def test_masked_values_stay_hidden(toolset):
    text = curated_events(toolset, binding(), window_hours=48)
    culture = next(line for line in text.splitlines() if "microbiologyevents" in line and "BLOOD" in line)
    assert "org_name" not in culture and "KLEBSIELLA" not in culture
    icu = next(line for line in text.splitlines() if " icustays:" in line)
    assert "outtime" not in icu and "los=" not in icu


def test_other_patient_and_empty_window(toolset):
    assert "PAST" not in curated_events(toolset, binding(pid=OTHER), window_hours=48)
    empty = curated_events(toolset, binding(cutoff=CUTOFF - timedelta(days=300)), window_hours=1)
    assert "(no events in this window)" in empty


def test_toolset_curate_method_is_the_declared_capability(toolset):
    from clinseek.toolsets import Toolset

    assert toolset.can_curate and not Toolset.can_curate
    assert toolset.curate(binding(), window_hours=48, max_events=3) == \
        curated_events(toolset, binding(), window_hours=48, max_events=3)
    assert "Potassium" in toolset.curate(binding(), window_hours=48)
