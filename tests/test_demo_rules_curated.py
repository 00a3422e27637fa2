"""The rules host on curated input: it reads the evidence package in the prompt (no data tools), decides with the
same rules as on its ehr_sql observations, cites no evidence ids, says what it used, and falls back where the
package cannot serve (CXR: no images)."""
from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox
from clinseek.hosts.base import GenerateContext
from clinseek_demo.rules import (Observation, RulesConfig, RulesHost, find_package, package_observations,
                             parse_package, risk_features, risk_points)
from clinseek.tasks import Task

CUT = datetime(2150, 3, 2, 12, 0)
FINISH = [{"name": "finish", "parameters": {"properties": {"answer": {}, "evidence": {}}}}]


def _task(family="mortality", candidates=("yes", "no"), **kw):
    return Task(qid=f"{family}-1", subject_id=1, hadm_id=2, prediction_time=CUT, task=family,
                task_type=kw.pop("task_type", "risk_prediction"), question=kw.pop("question", f"{family}?"),
                candidates=list(candidates), label=["no"], **kw)


def package(sick: bool) -> str:
    """A package in the ehr curator's format (newest first): sick = septic-looking ICU patient."""
    hr, rr, spo2, sbp, lac_new, lac_old = (135, 30, 86, 85, 4.6, 1.9) if sick else (78, 14, 98, 128, 1.0, 1.1)
    lines = [
        "Events in the 24 h before 2150-03-02 12:00 (newest first; 11 shown):",
        f"2150-03-02 11:00 chartevents: Heart Rate; value={hr}; valuenum={hr}; valueuom=bpm; warning=0",
        f"2150-03-02 11:00 chartevents: Respiratory Rate; value={rr}; valuenum={rr}; valueuom=insp/min",
        f"2150-03-02 11:00 chartevents: O2 saturation pulseoxymetry; value={spo2}; valuenum={spo2}; valueuom=%",
        f"2150-03-02 11:00 chartevents: itemid=220179; value={sbp}; valuenum={sbp}; valueuom=mmHg",
        "2150-03-02 10:00 chartevents: Heart Rate; value=60; valuenum=60; valueuom=bpm",   # older: not the latest
        f"2150-03-02 06:00 labevents: Lactate; value={lac_new}; valuenum={lac_new}; valueuom=mmol/L",
        "2150-03-02 06:00 labevents: White Blood Cells; value=9; valuenum=9; valueuom=K/uL",
        "2150-03-02 04:00 prescriptions: poe_seq=3; drug_type=MAIN; drug=Piperacillin-Tazobactam; route=IV",
        f"2150-03-01 20:00 labevents: Lactate; value={lac_old}; valuenum={lac_old}; valueuom=mmol/L",
        "2150-03-01 14:00 icustays: first_careunit=Medical Intensive Care Unit (MICU)",
        "2150-03-01 13:00 admissions: admission_type=EW EMER.; admission_location=EMERGENCY ROOM",
    ]
    return "\n".join(lines)


def _messages(pkg: str) -> list[dict]:
    return [{"role": "system", "content": "You answer from the evidence package below."},
            {"role": "user", "content": f"Evidence package:\n{pkg}\n\nQuestion: mortality?\nCandidates:\n- yes\n- no"}]


def _generate(task, pkg, tools=FINISH, config=None):
    host = RulesHost(config or RulesConfig())
    return asyncio.run(host.generate(_messages(pkg), tools, GenerateContext(task=task)))


def test_package_is_found_and_parsed():
    text = find_package(_messages(package(True)))
    assert text is not None and text.splitlines()[0].startswith("Events in the 24 h")
    assert text.splitlines()[-1].endswith("EMERGENCY ROOM")        # the question after it is not part of it
    events = parse_package(text)
    assert len(events) == 11 and events[0].label == "Heart Rate" and events[0].fields["valuenum"] == "135"
    assert events[3].label == "" and events[3].fields["itemid"] == "220179"   # an id the curator could not label
    assert find_package([{"role": "user", "content": "no package here"}]) is None


def test_package_becomes_the_seek_paths_features():
    obs, used = package_observations(package(True))
    f = risk_features(obs, CUT)
    v = f["values"]
    assert (v["heart_rate"], v["resp_rate"], v["spo2"], v["sbp"]) == (135, 30, 86, 85)  # newest values
    assert v["lactate"] == 4.6 and f["lactate_rise"] == pytest.approx(__import__("math").log(4.6 / 1.9))
    assert f["icu"] and not f["elective"] and f["problems"] == ["sepsis"]
    assert all(o.evidence_id is None for o in obs.values())
    assert any("charted vital signs" in u for u in used) and any("Piperacillin" in u for u in used)


def test_curated_decision_equals_the_one_from_equivalent_sql_observations():
    obs, _ = package_observations(package(True))

    def sql_obs(step, text):
        return Observation(step=step, tool="ehr_sql", arguments={}, text=f"[E1] {text}", evidence_id="E1",
                           is_error=False)

    seek = {"vitals": sql_obs("vitals", "itemid|valuenum|charttime\n220045|135|x\n220179|85|x\n220210|30|x\n"
                                        "220277|86|x"),
            "labs": sql_obs("labs", "itemid|valuenum|first_value|charttime|n\n50813|4.6|1.9|x|2\n51301|9|9|x|1"),
            "context": sql_obs("context", "admission_type|admittime|admissions_so_far|icu_stays_this_admission\n"
                                          "EW EMER.|2150-03-01 13:00:00|1|1"),
            "meds": sql_obs("meds", "drug|route|first_start\nPiperacillin-Tazobactam|IV|x")}
    for family in ("mortality", "los_gt_7", "icu_transfer_24h"):
        assert risk_points(family, risk_features(obs, CUT)) == risk_points(family, risk_features(seek, CUT))


@pytest.mark.parametrize("sick,answer", [(True, "yes"), (False, "no")])
def test_curated_risk_answer_follows_the_package(sick, answer):
    resp = _generate(_task(), package(sick))
    (call,) = resp.tool_calls
    assert call.name == "finish" and call.arguments == {"answer": [answer], "evidence": []}
    assert resp.content.startswith("From the curated evidence package:")
    assert "charted vital signs" in resp.content and "Warning score" in resp.content


def test_diagnosis_and_lab_orders_from_the_package():
    cands = ["INF002 Septicemia", "CIR019 Heart failure", "SYM012 Nonspecific chest pain"]
    resp = _generate(_task("diagnosis_ccsr", cands, task_type="decision_making"), package(True))
    assert resp.tool_calls[0].arguments["answer"] == ["INF002 Septicemia"]
    labs = ["Basic metabolic panel", "Complete blood count", "Lactate", "Troponin"]
    resp = _generate(_task("lab_orders_24h", labs, task_type="decision_making"), package(True))
    # routine panels always; lactate because it was drawn in the window; troponin was not
    assert resp.tool_calls[0].arguments["answer"] == ["Basic metabolic panel", "Complete blood count", "Lactate"]
    assert "lab tests drawn in the window" in resp.content


def test_cxr_families_fall_back_to_the_prior_and_say_why():
    task = _task("cxr_finding_presence", task_type="multimodal", question="Is there a pneumothorax?")
    resp = _generate(task, package(True))
    assert resp.tool_calls[0].arguments == {"answer": ["no"], "evidence": []}
    assert "no images" in resp.content and "prior" in resp.content


def test_no_package_in_the_prompt_falls_back_and_says_so():
    resp = _generate(_task(), "Free-text summary: the patient is unwell.")
    assert resp.tool_calls[0].arguments == {"answer": ["no"], "evidence": []}
    assert "no evidence package in the curator's format" in resp.content and "prior" in resp.content


def test_with_data_tools_the_package_is_not_used():
    tools = FINISH + [{"name": "ehr_sql", "parameters": {"properties": {"query": {}}}}]
    resp = _generate(_task(), package(True), tools=tools)
    assert resp.tool_calls[0].name == "ehr_sql"          # seeking: the host plans its queries as before


def test_a_curated_episode_from_the_real_curator(tmp_path):
    """The ehr curator's own package (fixture database) through the episode loop with no data tools."""
    from clinseek_ehr.curate import curated_events
    from clinseek_ehr.testing import CUTOFF, PATIENT, make_fixture_db
    from clinseek.toolsets import Binding

    db = make_fixture_db(tmp_path / "f.duckdb")
    task = Task(qid="m", subject_id=PATIENT, prediction_time=CUTOFF, task="mortality", question="Die?",
                candidates=["yes", "no"], label=["no"])
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    ehr = EhrToolset(EhrConfig(database=str(db)), None)
    ehr.open()
    try:
        pkg = curated_events(ehr, Binding.from_task(task), window_hours=48)
    finally:
        ehr.close()
    obs, used = package_observations(pkg)
    assert "vitals" in obs and "labs" in obs                         # the fixture has a heart rate and potassium
    runner = EpisodeRunner(task=task, run_index=0, host=RulesHost(RulesConfig()), toolbox=ToolBox.build([]),
                           limits=AgentLimits(), system="sys", user=f"Evidence package:\n{pkg}\n\nDie?",
                           use_tools=False)
    result, traj = asyncio.run(runner.run())
    assert result["status"] == "completed" and result["answer"] in (["yes"], ["no"])
    calls = [c for m in traj["messages"] for c in m.get("tool_calls") or []]
    assert [c["name"] for c in calls] == ["finish"] and calls[0]["arguments"]["evidence"] == []
    assert "From the curated evidence package" in traj["messages"][-2]["content"]
