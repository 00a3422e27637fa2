"""An in-test plugin: a scripted host and a small `notes` toolset, registered like a third party's."""
from __future__ import annotations

import asyncio
from typing import Any, Callable


from clinseek import Episode, GenerateContext, Host, HostConfig, HostResponse, ToolCall, ToolError, Toolset, \
    ToolsetConfig, Usage, hookimpl, tool

SCRIPTS: dict[str, Callable[[list, list, GenerateContext], HostResponse]] = {}
SEEN: list[dict[str, Any]] = []  # what the host was sent, for assertions


def script(name: str):
    def add(fn):
        SCRIPTS[name] = fn
        return fn
    return add


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(id="", name=name, arguments=arguments)


def reply(*calls: ToolCall, content: str | None = None, tokens=(100, 10)) -> HostResponse:
    return HostResponse(content=content, tool_calls=list(calls), usage=Usage(*tokens))


def turn_of(messages: list) -> int:
    return sum(1 for m in messages if m["role"] == "assistant")


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
    return reply(call("notes_echo", text="again"))


@script("text_only")
def _text(messages, tools, ctx):
    return reply(content="I think the answer is yes.")


class ScriptedConfig(HostConfig):
    script: str = "finish_yes"
    delay_s: float = 0.0
    base_url: str | None = None


class ScriptedHost(Host):
    provider = "scripted"
    Config = ScriptedConfig

    async def generate(self, messages, tools, ctx):
        SEEN.append({"messages": [dict(m) for m in messages], "tools": tools, "qid": ctx.task.qid})
        if self.config.delay_s:
            await asyncio.sleep(self.config.delay_s)
        return SCRIPTS[self.config.script](messages, tools, ctx)

    def default_site_local(self) -> bool:
        from clinseek.hosts.base import address_is_local

        return self.config.base_url is None or address_is_local(self.config.base_url)

    def describe(self):
        return {"provider": self.provider, "model": f"script:{self.config.script}", "base_url": self.config.base_url}


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
