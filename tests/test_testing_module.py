"""clinseek.testing, as a plugin author's test uses it: a toolset of theirs through a real episode."""
from __future__ import annotations

import clinseek
from clinseek import Episode, Toolset, ToolsetConfig, tool
from clinseek.testing import ScriptedHost, call, make_task, reply, run_episode, turn_of


class LookupConfig(ToolsetConfig):
    prefix: str = "found"


class LookupToolset(Toolset):
    name = "lookup"
    description = "A third party's toolset"
    Config = LookupConfig
    patient_data = False

    @tool
    def lookup_term(self, episode: Episode, term: str) -> str:
        """Look a term up.

        Args:
            term: the word to look up.
        """
        return f"{self.config.prefix}: {term} for {episode.binding.subject_id}"


def test_an_authors_toolset_runs_through_the_engine_loop():
    def script(messages, tools, ctx):
        if turn_of(messages) == 0:
            assert [t["name"] for t in tools] == ["lookup_term", "finish"]
            return reply(call("lookup_term", term="creatinine"))
        return reply(call("finish", answer=["no"], evidence=["E1"]))

    result, trajectory = run_episode([LookupToolset(LookupConfig())], script, make_task(subject_id=7))
    assert result["status"] == "completed" and result["answer"] == ["no"] and result["cited_evidence"] == ["E1"]
    tool_msgs = [m for m in trajectory["messages"] if m["role"] == "tool"]
    assert tool_msgs[0]["content"] == "[E1] found: creatinine for 7"
    assert trajectory["evidence"]["E1"]["tool"] == "lookup_term"


def test_a_bad_tool_argument_is_an_observation_not_a_crash():
    host = ScriptedHost(lambda m, t, c: reply(call("lookup_term", word="x")) if turn_of(m) == 0
                        else reply(call("finish", answer=["yes"])))
    result, trajectory = run_episode([LookupToolset(LookupConfig())], host)
    tool_msgs = [m for m in trajectory["messages"] if m["role"] == "tool"]
    assert tool_msgs[0]["is_error"] and "word" in tool_msgs[0]["content"]
    assert result["status"] == "completed" and len(host.seen) == 2


def test_the_public_api_is_enough_for_a_plugin_author():
    for name in ("RunContext", "Exporter", "Scorer", "TaskView", "Toolset", "Host", "TaskSource", "hookimpl",
                 "ToolError", "UserError"):
        assert getattr(clinseek, name) is not None


def test_a_toolset_whose_tool_breaks_the_naming_rule_is_refused_at_registration():
    from clinseek import hookimpl
    from clinseek.plugins import Registry

    class Badly(Toolset):
        name = "badly"
        Config = ToolsetConfig

        @tool
        def search(self, episode: Episode, q: str) -> str:
            """Search.

            Args:
                q: what.
            """
            return q

    class Plugin:
        @hookimpl
        def register_toolsets(self, register):
            register(Badly)

    reg = Registry()
    reg.register_module(Plugin(), name="badly-plugin")
    reg.collect()
    assert "badly" not in reg.items["toolsets"]
    assert "must be named badly_<verb>" in reg.plugins["badly-plugin"].error


def test_the_five_extension_classes_take_config_and_context_alike():
    from clinseek import Exporter, Host, HostConfig, Scorer, TaskSource

    context = object()
    made = [Toolset(LookupConfig(), context), Host(HostConfig(provider="x"), context),
            TaskSource({"path": "tasks.jsonl", "limit_rows": 3}, context), Exporter({"formats": ["trl"]}, context),
            Scorer({"k": 1}, context)]
    assert all(obj.context is context and obj.config is not None for obj in made)
    source = made[2]
    assert str(source.path) == "tasks.jsonl" and source.options == {"limit_rows": 3, "on_error": "skip"}
    assert made[3].options == {"formats": ["trl"]} and made[4].options == {"k": 1}
