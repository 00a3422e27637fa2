"""Toolset `ehr_reference`: the reference system's tool names and arguments, served by the guarded backend; the
patient and the cutoff stay bound whatever the arguments say."""
from __future__ import annotations

from datetime import timedelta

import pytest

from clinseek.errors import ToolError
from clinseek.testing import call, make_task, reply, run_episode, turn_of
from clinseek.toolsets import Binding, Episode
from clinseek_ehr.compat import EhrReferenceToolset
from clinseek_ehr.testing import CUTOFF, OTHER, PATIENT, make_fixture_db
from clinseek_ehr.toolset import EhrConfig

from test_ehr_tools import leaks

# Written from reading the reference's MCP tool definitions: name -> required arguments.
REFERENCE_SHAPES = {
    "load_ehr": {"subject_id"}, "get_table_names": {"subject_id"},
    "get_column_names": {"subject_id", "table_name"},
    "get_records_by_time": {"subject_id", "table_name", "start_time", "end_time"},
    "get_event_counts_by_time": {"subject_id", "start_time", "end_time"},
    "get_latest_records": {"subject_id", "table_name"},
    "get_records_by_keyword": {"subject_id", "table_name", "keyword"},
    "get_records_by_value": {"subject_id", "table_name", "column_name", "value"},
    "get_unique_values": {"subject_id", "table_name", "column_name"},
    "run_sql_query": {"subject_id", "sql_query"}, "think": {"thought"},
}


@pytest.fixture(scope="module")
def toolset(tmp_path_factory):
    db = make_fixture_db(tmp_path_factory.mktemp("compat") / "fixture.duckdb")
    ts = EhrReferenceToolset(EhrConfig(database=str(db), max_rows=20, max_chars=3000), None)
    ts.open()
    yield ts
    ts.close()


@pytest.fixture
def ep(toolset):
    e = Episode(binding=Binding(qid="q1", subject_id=PATIENT, hadm_id=None, prediction_time=CUTOFF), task=None)
    toolset.bind(e)
    yield e
    toolset.unbind(e)


def test_exactly_the_reference_names_and_argument_shapes_are_offered():
    specs = {s.name: s.schema() for s in EhrReferenceToolset.tool_specs()}
    assert set(specs) == set(REFERENCE_SHAPES)   # no ehr_* tool leaks into this toolset
    for name, required in REFERENCE_SHAPES.items():
        assert set(specs[name]["parameters"]["required"]) == required, name


def test_another_patient_is_refused_never_served(toolset, ep):
    with pytest.raises(ToolError, match=f"subject_id '{OTHER}' is refused"):
        toolset.get_latest_records(ep, str(OTHER), "labevents")
    with pytest.raises(ToolError, match="refused"):
        toolset.run_sql_query(ep, f"{OTHER}", f"SELECT * FROM labevents WHERE subject_id = {OTHER}")
    out = toolset.get_latest_records(ep, f"'{PATIENT}'", "labevents")   # the bound patient, quoted: accepted
    assert out and not leaks(out)


def test_a_time_after_the_cutoff_is_refused_and_later_rows_never_show(toolset, ep):
    later = (CUTOFF + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    with pytest.raises(ToolError, match="after the current time"):
        toolset.get_records_by_time(ep, str(PATIENT), "labevents", "2100-01-01", later)
    with pytest.raises(ToolError, match="after the current time"):
        toolset.get_event_counts_by_time(ep, str(PATIENT), "2100-01-01", (CUTOFF + timedelta(days=2)).strftime("%Y-%m-%d"))
    out = toolset.get_records_by_time(ep, str(PATIENT), "labevents", "2100-01-01",
                                      CUTOFF.strftime("%Y-%m-%d %H:%M:%S"))
    assert "PAST" in out   # the rows before the cutoff are there
    assert not leaks(out)
    counts = toolset.get_event_counts_by_time(ep, str(PATIENT), "2100-01-01", CUTOFF.strftime("%Y-%m-%d %H:%M:%S"))
    assert "labevents:" in counts and "FUTURE" not in counts


def test_values_and_unique_values_stay_scoped_and_masked(toolset, ep):
    out = toolset.get_unique_values(ep, str(PATIENT), "admissions", "discharge_location")
    assert not leaks(out)   # the open stay's discharge location is masked until discharge
    hit = toolset.get_records_by_value(ep, str(PATIENT), "admissions", "subject_id", str(OTHER))
    assert "(no rows)" in hit and not leaks(hit)   # another patient's rows are outside the scope, even by value
    own = toolset.get_records_by_value(ep, str(PATIENT), "admissions", "subject_id", str(PATIENT))
    assert "(2 rows)" in own and not leaks(own)   # the two admissions known by the cutoff
    with pytest.raises(ToolError, match="not in admissions"):
        toolset.get_unique_values(ep, str(PATIENT), "admissions", "no_such_column")


def test_output_is_bounded_and_says_so(toolset, ep):
    out = toolset.run_sql_query(ep, str(PATIENT), "SELECT a.* FROM labevents AS a, labevents AS b, labevents AS c")
    assert len(out) <= 3000 + 200 and ("more" in out.lower() or "cut" in out.lower())


def test_an_episode_in_the_reference_vocabulary_ends_with_finish_response(toolset):
    pid = str(PATIENT)

    def script(messages, tools, ctx):
        n = turn_of(messages)
        if n == 0:
            return reply(call("load_ehr", subject_id=pid))
        if n == 1:
            return reply(call("get_latest_records", subject_id=pid, table_name="labevents"),
                         call("think", thought="creatinine is rising"))
        return reply(call("finish", response=["yes"]))

    task = make_task(subject_id=PATIENT, prediction_time=CUTOFF, label=["yes"])
    result, trajectory = run_episode([toolset], script, task, open_toolsets=False)
    assert result["status"] == "completed" and result["answer"] == ["yes"]
    assert result["tool_counts"] == {"load_ehr": 1, "get_latest_records": 1, "think": 1}
    names = [c["name"] for m in trajectory["messages"] if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    assert names == ["load_ehr", "get_latest_records", "think", "finish"]
    assert all(not leaks(m["content"]) for m in trajectory["messages"] if m["role"] == "tool")


# Candidate mapping -------------------------------------------------------------------------------------------

CANDIDATES = ["Acute kidney failure", "Chronic kidney disease", "Sepsis", "Septic shock", "Heart failure"]


def _cand_episode(toolset, candidates=CANDIDATES):
    from clinseek.tasks import Task

    view = Task.model_validate({"qid": "c1", "subject_id": PATIENT, "prediction_time": CUTOFF, "task": "dx",
                                "question": "?", "candidates": candidates, "label": ["Septic shock"]}).view()
    return Episode(binding=Binding(qid="c1", subject_id=PATIENT, hadm_id=None, prediction_time=CUTOFF), task=view)


def test_candidates_by_keyword_and_fuzzy_rank_the_right_spelling_first(tmp_path):
    from clinseek_ehr.toolset import EhrToolset

    ts = EhrToolset(EhrConfig(database=str(make_fixture_db(tmp_path / "c.duckdb"))), None)
    ts.open()
    try:
        ep = _cand_episode(ts)
        out = ts.ehr_candidates(ep, "kidney failure acute")
        assert out.splitlines()[1].startswith("1 | Acute kidney failure | 1.0")
        fuzzy = ts.ehr_candidates(ep, "septik shok", mode="fuzzy")
        assert fuzzy.splitlines()[1].startswith("1 | Septic shock")
        assert ts.ehr_candidates(ep, "septik shok", mode="fuzzy") == fuzzy   # deterministic
        tie = ts.ehr_candidates(ep, "kidney")   # both kidney candidates score 1.0: the list's own order
        assert [line.split(" | ")[1] for line in tie.splitlines()[1:3]] == ["Acute kidney failure",
                                                                            "Chronic kidney disease"]
        assert "no candidate matches" in ts.ehr_candidates(ep, "fracture")
        assert len(ts.ehr_candidates(ep, "s", mode="fuzzy", limit=2).splitlines()) <= 3
        with pytest.raises(ToolError, match="no candidate list"):
            ts.ehr_candidates(_cand_episode(ts, candidates=[]), "sepsis")
    finally:
        ts.close()


def test_a_recipe_can_use_the_reference_toolset_through_the_registry(tmp_path, capsys):
    from clinseek.cli import main
    from clinseek.plugins import reset_registry

    make_fixture_db(tmp_path / "fixture.duckdb")
    (tmp_path / "tasks.jsonl").write_text(
        '{"qid": "q1", "subject_id": %d, "prediction_time": "%s", "task": "demo", "question": "?"}\n'
        % (PATIENT, CUTOFF.isoformat()))
    (tmp_path / "recipe.yaml").write_text(
        "clinseek: 1\nname: ref\nhost: {provider: rules}\n"
        "tools:\n  - use: ehr_reference\n    with: {database: fixture.duckdb}\n"
        "tasks: {source: jsonl, path: tasks.jsonl}\n")
    reset_registry()   # registered like a third party's plugin: the name rule's exception must hold there
    with pytest.raises(SystemExit) as info:
        main(["validate", str(tmp_path / "recipe.yaml")])
    out = capsys.readouterr()
    assert info.value.code == 0, out.err
    assert "load_ehr" in out.out and "get_records_by_time" in out.out and "ehr_sql" not in out.out


def test_semantic_candidates_use_the_registered_local_embedder(tmp_path):
    from clinseek_ehr.toolset import EhrToolset

    ts = EhrToolset(EhrConfig(database=str(make_fixture_db(tmp_path / "s.duckdb"))), None)
    ts.open()
    try:
        ep = _cand_episode(ts)
        out = ts.ehr_candidates(ep, "the kidneys stopped working suddenly", mode="semantic")
        assert out.splitlines()[1].split(" | ")[1] == "Acute kidney failure"   # no shared word with "failure"
        heart = ts.ehr_candidates(ep, "cardiac pump weakness with fluid overload", mode="semantic")
        assert heart.splitlines()[1].split(" | ")[1] == "Heart failure"
        assert ts.ehr_candidates(ep, "cardiac pump weakness with fluid overload", mode="semantic") == heart
        assert len(ts._candidate_vectors) == 1   # the candidates were embedded once
        bad = EhrToolset(EhrConfig(database=str(tmp_path / "s.duckdb"), candidate_embedder="nope"), None)
        bad.open()
        try:
            with pytest.raises(ToolError, match="semantic mode needs an embedder"):
                bad.ehr_candidates(_cand_episode(bad), "kidney", mode="semantic")
        finally:
            bad.close()
    finally:
        ts.close()
