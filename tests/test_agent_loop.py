"""The episode loop: binding, evidence ids, bounds, errors as observations, budgets, text replies."""
from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

import spine_plugin as sp
from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox
from clinseek.hosts.base import Price, ToolCall
from clinseek.tasks import Task

TASK = Task(qid="q7", subject_id=42, hadm_id=9, prediction_time=datetime(2150, 3, 1, 8, 0), task="mortality",
            task_type="risk_prediction", question="Will they die?", candidates=["yes", "no"], label=["no"])


def make_runner(script, limits=None, price=None, host_cfg=None, task=TASK):
    if callable(script):
        sp.SCRIPTS["_inline"] = script
        script = "_inline"
    host = sp.ScriptedHost(host_cfg or sp.ScriptedConfig(provider="scripted", script=script))
    toolset = sp.NotesToolset(sp.NotesConfig())
    return EpisodeRunner(task=task, run_index=0, host=host, toolbox=ToolBox.build([toolset]),
                         limits=limits or AgentLimits(), system="sys", user="user", price=price)


def run(runner):
    return asyncio.run(runner.run())


def test_binding_comes_from_the_task_and_tools_cannot_widen_it():
    def script(messages, tools, ctx):
        if sp.turn_of(messages) == 0:
            # The model tries to pass a patient id: the schema has no such argument, so it is refused.
            return sp.reply(sp.call("notes_patient"), sp.call("notes_echo", text="x", subject_id=7))
        return sp.reply(sp.call("finish", answer=["no"]))

    result, traj = run(make_runner(script))
    tool_msgs = [m for m in traj["messages"] if m["role"] == "tool"]
    assert "subject=42 cutoff=2150-03-01T08:00:00" in tool_msgs[0]["content"]
    assert tool_msgs[1]["is_error"] and "unknown argument(s) subject_id" in tool_msgs[1]["content"]
    assert result["status"] == "completed" and result["answer"] == ["no"]


def test_several_calls_in_one_turn_all_run_and_get_evidence_ids():
    result, traj = run(make_runner("seek_then_finish"))
    tool_msgs = [m for m in traj["messages"] if m["role"] == "tool"]
    assert [m["evidence_id"] for m in tool_msgs[:2]] == ["E1", "E2"]
    assert tool_msgs[0]["content"].startswith("[E1] ") and tool_msgs[1]["content"] == "[E2] hello"
    assert set(traj["evidence"]) == {"E1", "E2"} and traj["evidence"]["E2"]["tool"] == "notes_echo"
    # E9 does not exist: it is dropped from the citation and the model is told.
    assert result["cited_evidence"] == ["E1"]
    assert "Unknown evidence ids ignored: E9" in tool_msgs[-1]["content"]
    assert result["tool_calls"] == 2 and result["tool_counts"] == {"notes_patient": 1, "notes_echo": 1}
    assert result["usage"] == {"input_tokens": 200, "output_tokens": 20, "cached_tokens": 0}


def test_tool_failures_become_observations_and_the_episode_goes_on():
    def script(messages, tools, ctx):
        if sp.turn_of(messages) == 0:
            return sp.reply(sp.call("notes_fail"), sp.call("notes_refuse"), sp.call("no_such_tool"),
                            ToolCall(id="c9", name="notes_echo", raw_arguments="{text: oops", error="Expecting"))
        return sp.reply(sp.call("finish", answer=["yes"]))

    result, traj = run(make_runner(script))
    obs = [m for m in traj["messages"] if m["role"] == "tool"][:4]
    assert all(m["is_error"] for m in obs)
    assert "notes_fail failed: RuntimeError: disk on fire" in obs[0]["content"]
    assert obs[1]["content"].endswith("Error: not allowed; try notes_echo")
    assert "no tool named 'no_such_tool'" in obs[2]["content"] and "notes_echo" in obs[2]["content"]
    assert "not valid JSON" in obs[3]["content"]
    assert result["status"] == "completed"


def test_observations_are_bounded_and_say_so():
    def script(messages, tools, ctx):
        if sp.turn_of(messages) == 0:
            return sp.reply(sp.call("notes_big", n=5000))
        return sp.reply(sp.call("finish", answer=["yes"]))

    result, traj = run(make_runner(script, limits=AgentLimits(max_observation_chars=1000)))
    obs = [m for m in traj["messages"] if m["role"] == "tool"][0]
    assert obs["truncated"] is True and len(obs["content"]) <= 1010
    assert "of 5000 characters" in obs["content"]
    assert traj["evidence"]["E1"]["chars"] == 5000 and traj["evidence"]["E1"]["truncated"]


def test_turn_budget_ends_the_episode():
    result, _ = run(make_runner("loop_tools", limits=AgentLimits(max_turns=3)))
    assert result["status"] == "budget_exhausted" and "max_turns (3)" in result["reason"]
    assert result["turns"] == 3 and result["answer"] == []


def test_tool_call_budget_tells_the_model_to_finish():
    result, traj = run(make_runner("loop_tools", limits=AgentLimits(max_turns=5, max_tool_calls=2)))
    obs = [m for m in traj["messages"] if m["role"] == "tool"]
    assert not obs[1]["is_error"] and obs[2]["is_error"] and "budget (2) is used up" in obs[2]["content"]
    assert result["status"] == "budget_exhausted"


def test_a_repeated_call_is_answered_from_the_ledger_not_run_again():
    def script(messages, tools, ctx):
        turn = sp.turn_of(messages)
        if turn < 2:  # the same call twice in one turn, then again in the next
            return sp.reply(sp.call("notes_echo", text="x"), sp.call("notes_echo", text="x"))
        if turn == 2:  # a failed call may be tried again
            return sp.reply(sp.call("notes_fail"))
        if turn == 3:
            return sp.reply(sp.call("notes_fail"))
        return sp.reply(sp.call("finish", answer=["no"]))

    result, traj = run(make_runner(script))
    obs = [m for m in traj["messages"] if m["role"] == "tool"]
    first = obs[0]["evidence_id"]
    assert not obs[0]["is_error"] and obs[0]["content"] == f"[{first}] x"
    assert obs[1]["is_error"] and "already called with these arguments (in this turn)" in obs[1]["content"]
    assert obs[2]["is_error"] and f"(result [{first}])" in obs[2]["content"] and "finish" in obs[2]["content"]
    assert obs[4]["is_error"] and "disk on fire" in obs[4]["content"] and "disk on fire" in obs[5]["content"]
    assert result["status"] == "completed" and result["tool_calls"] == 6


def test_the_last_turn_and_a_spent_tool_budget_offer_only_finish():
    offered = []

    def script(messages, tools, ctx):
        offered.append([t["name"] for t in tools])
        return sp.reply(sp.call("notes_echo", text=f"t{sp.turn_of(messages)}"))

    result, _ = run(make_runner(script, limits=AgentLimits(max_turns=4, max_tool_calls=10)))
    assert all("notes_echo" in names for names in offered[:3]) and offered[3] == ["finish"]
    assert result["status"] == "budget_exhausted"
    offered.clear()
    run(make_runner(script, limits=AgentLimits(max_turns=6, max_tool_calls=2)))
    assert "notes_echo" in offered[1] and offered[2:] == [["finish"]] * 4
    offered.clear()
    run(make_runner(script, limits=AgentLimits(max_turns=3, finish_on_last_turn=False)))
    assert all("notes_echo" in names for names in offered)


def test_finish_answers_are_limited_to_the_candidates():
    runner = make_runner("seek_then_finish")
    finish = runner.tool_schemas[-1]
    assert finish["parameters"]["properties"]["answer"]["items"]["enum"] == ["yes", "no"]


def test_wall_time_budget():
    host_cfg = sp.ScriptedConfig(provider="scripted", script="loop_tools", delay_s=0.2)
    result, _ = run(make_runner("loop_tools", limits=AgentLimits(timeout_s=0.3), host_cfg=host_cfg))
    assert result["status"] == "timeout" and "0.3 s" in result["reason"]


def test_cost_budget_stops_before_exceeding():
    price = Price(input=1000.0, output=1000.0)  # each call: 110 tokens -> $0.11
    result, _ = run(make_runner("loop_tools", limits=AgentLimits(max_turns=50, max_cost_usd=0.3), price=price))
    assert result["status"] == "budget_exhausted" and "max_cost_usd" in result["reason"]
    assert result["cost_usd"] <= 0.3 and result["turns"] == 2


@pytest.mark.parametrize("mode,status,answer", [("answer", "completed", ["yes"]), ("fail", "error", []),
                                                ("remind", "budget_exhausted", [])])
def test_text_replies_follow_on_text_reply(mode, status, answer):
    result, traj = run(make_runner("text_only", limits=AgentLimits(max_turns=2, on_text_reply=mode)))
    assert result["status"] == status and result["answer"] == answer
    if mode == "remind":
        assert sum(1 for m in traj["messages"] if m["role"] == "user") == 3  # the prompt + 2 reminders


def test_host_error_is_recorded_not_raised():
    from clinseek.errors import ClinseekError

    def script(messages, tools, ctx):
        raise ClinseekError("server said 503 after 5 retries")

    result, _ = run(make_runner(script))
    assert result["status"] == "error" and "503" in result["reason"]


def test_finish_with_bad_answer_gets_a_correction():
    def script(messages, tools, ctx):
        if sp.turn_of(messages) == 0:
            return sp.reply(sp.call("finish", answer=[{"x": 1}]))
        return sp.reply(sp.call("finish", answer="no"))

    result, traj = run(make_runner(script))
    assert "finish needs `answer` as a list of strings" in traj["messages"][3]["content"]
    assert result["answer"] == ["no"]


def test_concurrent_episodes_keep_their_own_state():
    toolset = sp.NotesToolset(sp.NotesConfig())
    box = ToolBox.build([toolset])
    tasks = [TASK.model_copy(update={"qid": f"q{i}", "subject_id": 100 + i}) for i in range(12)]

    async def go():
        runners = [EpisodeRunner(task=t, run_index=0, host=sp.ScriptedHost(sp.ScriptedConfig(
            provider="scripted", script="seek_then_finish", delay_s=0.01)), toolbox=box, limits=AgentLimits(),
            system="s", user="u") for t in tasks]
        return await asyncio.gather(*(r.run() for r in runners)), runners

    outs, runners = asyncio.run(go())
    for (result, traj), task in zip(outs, tasks):
        first = next(m for m in traj["messages"] if m["role"] == "tool")
        assert f"subject={task.subject_id} " in first["content"]
    assert all(r.episodes["notes"].state["calls"] == 1 for r in runners)


def test_tool_schema_from_hints_and_docstring():
    specs = {s.name: s.schema() for s in sp.NotesToolset.tool_specs()}
    echo = specs["notes_echo"]
    assert echo["description"] == "Echo text back."
    assert echo["parameters"]["required"] == ["text"]
    assert echo["parameters"]["properties"]["times"] == {"type": "integer", "description": "how many times.",
                                                        "default": 1}
    with pytest.raises(ValueError):
        from clinseek.toolsets import build_tool_spec

        build_tool_spec(lambda self, ep: None, "bad name!")


def test_a_host_that_limits_calls_in_decoding_keeps_every_tool_in_the_prompt():
    seen = []

    class Decoding(sp.ScriptedHost):
        limits_calls_in_decoding = True

    def script(messages, tools, ctx):
        seen.append(([t["name"] for t in tools], ctx.allowed))
        return sp.reply(sp.call("notes_echo", text=f"t{sp.turn_of(messages)}"))

    sp.SCRIPTS["_inline"] = script
    host = Decoding(sp.ScriptedConfig(provider="scripted", script="_inline"))
    runner = EpisodeRunner(task=TASK, run_index=0, host=host, toolbox=ToolBox.build([sp.NotesToolset(sp.NotesConfig())]),
                           limits=AgentLimits(max_turns=2), system="s", user="u")
    run(runner)
    assert seen[0][1] is None and "notes_echo" in seen[0][0]
    assert seen[1][0] == seen[0][0] and seen[1][1] == ["finish"]  # same prompt tools, decoding limited


def test_a_model_stuck_repeating_itself_is_offered_only_finish():
    offered = []

    def script(messages, tools, ctx):
        offered.append([t["name"] for t in tools])
        if "finish" in offered[-1] and len(offered[-1]) == 1:
            return sp.reply(sp.call("finish", answer=["no"]))
        return sp.reply(sp.call("notes_echo", text="same"))

    result, _ = run(make_runner(script, limits=AgentLimits(max_turns=10)))
    # turn 1 runs the call, turns 2 and 3 only repeat it, so turn 4 offers only finish
    assert [len(o) > 1 for o in offered] == [True, True, True, False]
    assert result["status"] == "completed" and result["turns"] == 4
    offered.clear()
    result, _ = run(make_runner(script, limits=AgentLimits(max_turns=5, finish_after_repeated_turns=0,
                                                           finish_on_last_turn=False)))
    assert all(len(o) > 1 for o in offered) and result["status"] == "budget_exhausted"
