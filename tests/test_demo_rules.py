"""The rules host: deterministic policies that seek evidence through the real tools and decide from observations."""
import asyncio

import pytest

from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox
from clinseek.exporters.sharegpt import ShareGPTExporter, validate_sharegpt
from clinseek.hosts.base import GenerateContext
from clinseek_demo.rules import (ED_SQL, VITALS_SQL, Observation, RulesConfig, RulesHost, finding_probabilities,
                             parse_table, warning_score)
from clinseek.tasks import Task


def _task(family="mortality", label=("no",), candidates=("yes", "no"), pid=10000001, cutoff=None, **kw):
    from clinseek_ehr.testing import CUTOFF

    return Task(qid=f"{family}_{pid}", subject_id=pid, hadm_id=None, prediction_time=cutoff or CUTOFF,
                task=family, task_type="risk_prediction", question=kw.pop("question", f"{family}?"),
                candidates=list(candidates), label=list(label), **kw)


@pytest.fixture(scope="module")
def ehr(tmp_path_factory):
    from clinseek_ehr.testing import make_fixture_db
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    db = make_fixture_db(tmp_path_factory.mktemp("ehr") / "fixture.duckdb")
    ts = EhrToolset(EhrConfig(database=str(db), sql_timeout_s=5.0, max_rows=50), None)
    ts.open()
    yield ts
    ts.close()


def _run(task, toolsets, config=None):
    host = RulesHost(config or RulesConfig())
    runner = EpisodeRunner(task=task, run_index=0, host=host, toolbox=ToolBox.build(toolsets),
                           limits=AgentLimits(), system="sys", user=task.question)
    return asyncio.run(runner.run())


def test_registered_by_the_demo_plugin_and_site_local():
    from clinseek.plugins import get_registry

    reg = get_registry()
    assert reg.get("hosts", "rules") is RulesHost
    assert reg.items["hosts"]["rules"][1] == "demo"   # registered by the demo plugin, not the core
    host = RulesHost(RulesConfig())
    assert host.site_local and host.describe() == {"provider": "rules", "model": "rules-v1"}
    with pytest.raises(Exception):
        RulesConfig(thresholdz={})


def test_mortality_episode_through_the_real_ehr_tools(ehr):
    result, traj = _run(_task(), [ehr])
    assert result["status"] == "completed", result["reason"]
    calls = [c for m in traj["messages"] for c in m.get("tool_calls") or []]
    assert [c["name"] for c in calls] == ["ehr_sql"] * 6 + ["finish"]
    tool_msgs = [m for m in traj["messages"] if m["role"] == "tool"][:-1]
    # the guard accepted every query the policy wrote, and the vitals came back; the fixture has no ED tables,
    # so that one query is refused and the policy goes on without it
    assert _errors(traj) == ["vitalsign"], [m["content"] for m in tool_msgs]
    assert "220045|" in tool_msgs[0]["content"]
    assert result["answer"] in (["yes"], ["no"])
    # the answer cites the observations it was computed from
    assert result["cited_evidence"] and set(result["cited_evidence"]) <= set(traj["evidence"])
    assert "Warning score" in traj["messages"][-2]["content"]


def _errors(traj):
    """Tables named in refused queries (the fixture database has no ED module)."""
    out = []
    for m in traj["messages"]:
        if m["role"] == "tool" and m["is_error"]:
            found = __import__("re").search(r"table (\w+) is not available", m["content"])
            out.append(found.group(1) if found else m["content"])
    return out


def test_decision_never_depends_on_the_label(ehr):
    _, a = _run(_task(label=["yes"]), [ehr])
    _, b = _run(_task(label=["no"]), [ehr])
    strip = lambda t: [(m["role"], m.get("content"), [(c["name"], c["arguments"]) for c in m.get("tool_calls") or []])
                       for m in t["messages"]]  # noqa: E731
    assert strip(a) == strip(b)


def test_trajectory_exports_as_valid_training_rows(ehr):
    _, traj = _run(_task(), [ehr])
    traj["tools"] = ToolBox.build([ehr]).schemas()
    row = ShareGPTExporter({}).convert(traj)
    assert row is not None and validate_sharegpt(row) == []


def test_lab_orders_and_diagnosis_through_the_real_tools(ehr):
    res, traj = _run(_task("lab_orders_24h", label=["Basic metabolic panel"],
                           candidates=["Basic metabolic panel", "Complete blood count", "Lactate", "Troponin T"]),
                     [ehr])
    assert res["status"] == "completed" and _errors(traj) == []
    assert {"Basic metabolic panel", "Complete blood count"} <= set(res["answer"])
    res, traj = _run(_task("diagnosis_ccsr", label=["Septicemia"],
                           candidates=["Septicemia", "Heart failure", "Nonspecific chest pain"]), [ehr])
    assert res["status"] == "completed" and res["answer"]
    assert set(res["answer"]) <= {"Septicemia", "Heart failure", "Nonspecific chest pain"}
    assert _errors(traj) == ["vitalsign"]


def test_missing_tools_fall_back_to_a_prior_and_say_so():
    res, traj = _run(_task("cxr_finding_presence", question="Is there a pleural effusion?"), [])
    assert res["status"] == "completed" and res["answer"] == ["no"]
    said = traj["messages"][-2]["content"]
    assert "no cxr_studies, cxr_classify, cxr_compare" in said and "prior" in said
    res, traj = _run(_task("mortality"), [])
    assert res["answer"] == ["no"] and "falling back to the prior" in traj["messages"][-2]["content"]


def _obs(step, text, eid="E1"):
    return Observation(step=step, tool="ehr_sql", arguments={}, text=f"[{eid}] {text}", evidence_id=eid,
                       is_error=False)


def test_warning_score_and_thresholds_decide_risk():
    host = RulesHost(RulesConfig(thresholds={"mortality": 6}))
    sick = {"vitals": _obs("vitals", "itemid|valuenum|charttime\n220045|135|t\n220210|28|t\n220277|90|t\n"
                                    "220179|85|t\n(4 rows)"),
            "labs": _obs("labs", "itemid|valuenum|charttime\n50813|4.5|t\n(1 row)", "E2"),
            "context": _obs("context", "anchor_age|gender|admission_type|admittime|admissions_so_far\n"
                                       "84|F|URGENT|t|1\n(1 row)", "E3")}
    d = host.decide("mortality", _task(), {}, sick)
    assert d.answer == ["yes"] and d.evidence == ["E1", "E2", "E3"] and "threshold 6" in d.reasoning
    well = {"vitals": _obs("vitals", "itemid|valuenum|charttime\n220045|72|t\n220277|98|t\n(2 rows)")}
    assert host.decide("mortality", _task(), {}, well).answer == ["no"]
    points, parts = warning_score({"heart_rate": 135, "spo2": 90, "sbp": 85, "resp_rate": 28, "lactate": 4.5}, 84)
    assert points == 3 + 3 + 3 + 3 + 3 + 2 and len(parts) == 6


def test_parsers():
    assert parse_table("[E4] a|b\n1|x\\|y\n... 3 more rows not shown") == [{"a": "1", "b": "x\\|y"}]
    assert parse_table("no table here") == []
    assert finding_probabilities("finding|probability|threshold\nPleural Effusion|0.81|0.6\nEdema|0.2|0.5\n") == {
        "pleural_effusion": (0.81, 0.6), "edema": (0.2, 0.5)}
    assert finding_probabilities('{"Cardiomegaly": 0.7}') == {"cardiomegaly": (0.7, None)}


def test_cxr_presence_uses_the_model_threshold():
    host = RulesHost(RulesConfig())
    task = _task("cxr_finding_presence", question="Is there a pleural effusion on the latest chest X-ray?")
    tools = {"cxr_classify": {"name": "cxr_classify", "parameters": {"properties": {"study_id": {}}}}}
    obs = {"classify": Observation("classify", "cxr_classify", {"study_id": 5},
                                   "[E2] finding|probability|threshold\npleural effusion|0.55|0.6\n", "E2", False)}
    assert host.decide("cxr_finding_presence", task, tools, obs).answer == ["no"]  # 0.55 < the card's 0.6
    obs["classify"].text = "[E2] finding|probability|threshold\npleural effusion|0.65|0.6\n"
    d = host.decide("cxr_finding_presence", task, tools, obs)
    assert d.answer == ["yes"] and d.evidence == ["E2"]


def test_generate_is_turn_by_turn_from_messages_only():
    host = RulesHost(RulesConfig(use_kb=False))
    tools = [{"name": "ehr_sql", "parameters": {"properties": {"query": {}}}},
             {"name": "finish", "parameters": {"properties": {"answer": {}, "evidence": {}}}}]
    task = _task()
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    r1 = asyncio.run(host.generate(msgs, tools, GenerateContext(task=task)))
    assert r1.tool_calls[0].id == "rules_vitals" and r1.tool_calls[0].arguments == {"query": VITALS_SQL}
    msgs += [{"role": "assistant", "content": r1.content, "tool_calls": [
        {"id": "rules_vitals", "name": "ehr_sql", "arguments": {"query": VITALS_SQL}}]},
        {"role": "tool", "tool_call_id": "rules_vitals", "name": "ehr_sql", "content": "[E1] x", "evidence_id": "E1"}]
    r2 = asyncio.run(host.generate(msgs, tools, GenerateContext(task=task)))
    assert r2.tool_calls[0].id == "rules_ed" and r2.tool_calls[0].arguments == {"query": ED_SQL}
    assert r2.usage.input_tokens == 0


def test_other_benchmarks_task_names_map_onto_a_policy():
    from clinseek_demo.rules import policy_family

    assert policy_family(_task("ED_Inpatient_Mortality")) == "mortality"
    assert policy_family(_task("ED_Critical_Outcomes")) == "icu_transfer_24h"
    assert policy_family(_task("Readmission_30")) == "readmission_30d"
    assert policy_family(_task("something_else")) == "mortality"  # a yes/no risk question: the acuity policy
    assert policy_family(_task("weird", candidates=["a", "b"])) == "weird"
    assert policy_family(_task("cxr_change")) == "cxr_change"
