"""An in-test plugin: clinseek.testing's scripted host and a small `notes` toolset, registered like a third
party's."""
from __future__ import annotations

from typing import Any

from clinseek import Episode, Scorer, ToolError, Toolset, ToolsetConfig, hookimpl, tool
from clinseek.testing import SCRIPTS  # noqa: F401 - tests register inline scripts through sp.SCRIPTS
from clinseek.testing import ScriptedConfig as BaseScriptedConfig
from clinseek.testing import ScriptedHost as BaseScriptedHost
from clinseek.testing import call, reply, script, turn_of

SEEN: list[dict[str, Any]] = []  # what the host was sent, for assertions


@script("finish_yes")
def _finish_yes(messages, tools, ctx):
    return reply(call("finish", answer=["yes"]))


@script("seek_then_finish")
def _seek(messages, tools, ctx):
    if turn_of(messages) == 0:
        return reply(call("notes_patient"), call("notes_echo", text="hello"))
    return reply(call("finish", answer=["yes"], evidence=["E1", "E9"]))


@script("loop_tools")
def _loop(messages, tools, ctx):
    return reply(call("notes_echo", text=f"again {turn_of(messages)}"))


@script("text_only")
def _text(messages, tools, ctx):
    return reply(content="I think the answer is yes.")


class ScriptedConfig(BaseScriptedConfig):
    script: str = "finish_yes"


class ScriptedHost(BaseScriptedHost):
    """clinseek.testing's scripted host, also recording every call in SEEN (the project's tests read it)."""

    Config = ScriptedConfig

    async def generate(self, messages, tools, ctx):
        SEEN.append({"messages": [dict(m) for m in messages], "tools": tools, "qid": ctx.task.qid})
        return await super().generate(messages, tools, ctx)


class NotesConfig(ToolsetConfig):
    max_chars: int = 1000
    greeting: str = "hi"


class NotesToolset(Toolset):
    name = "notes"
    description = "A test toolset"
    Config = NotesConfig
    opened = 0
    binds: list = []

    def open(self):
        type(self).opened += 1

    def bind(self, episode: Episode):
        episode.state["calls"] = 0
        type(self).binds.append(episode.binding.qid)

    @tool
    def notes_patient(self, episode: Episode) -> str:
        """Who and when this episode is about."""
        return f"subject={episode.binding.subject_id} cutoff={episode.binding.prediction_time.isoformat()}"

    @tool
    def notes_echo(self, episode: Episode, text: str, times: int = 1) -> str:
        """Echo text back.

        Args:
            text: what to echo.
            times: how many times.
        """
        episode.state["calls"] += 1
        return " ".join([text] * times)

    @tool
    def notes_big(self, episode: Episode, n: int) -> str:
        """Return n characters."""
        return "x" * n

    @tool
    def notes_fail(self, episode: Episode) -> str:
        """Always raises."""
        raise RuntimeError("disk on fire")

    @tool
    def notes_refuse(self, episode: Episode) -> str:
        """Always refuses."""
        raise ToolError("not allowed; try notes_echo")


@hookimpl
def register_hosts(register):
    register(ScriptedHost)


@hookimpl
def register_toolsets(register):
    register(NotesToolset)


class AnswerLengthScorer(Scorer):
    """A third party's scorer: how many candidates the answer names."""

    name = "answer_length"

    def score(self, answer, task):
        return {"answer_length": float(len(answer))}


@hookimpl
def register_scorers(register):
    register(AnswerLengthScorer)
