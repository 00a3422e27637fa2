"""What a plugin author's own tests import: a scripted host, task and episode helpers.

    from clinseek.testing import ScriptedHost, call, make_task, reply, run_episode

    def test_my_tool_in_an_episode():
        def script(messages, tools, ctx):                 # one turn of the "model"
            if turn_of(messages) == 0:
                return reply(call("mytools_lookup", term="creatinine"))
            return reply(call("finish", answer=["yes"]))
        result, trajectory = run_episode([MyToolset(MyConfig())], script)
        assert result["status"] == "completed"

The episode runs through the engine's own loop (binding, evidence ids, bounds, budgets), so what passes here
behaves the same under `clinseek apply`. A toolset is opened before and closed after the episode.
"""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Callable

from clinseek.hosts.base import GenerateContext, Host, HostConfig, HostResponse, ToolCall, Usage

Script = Callable[[list, list, GenerateContext], HostResponse]
SCRIPTS: dict[str, Script] = {}   # scripts by name, for recipes (`host: {provider: scripted, script: NAME}`)


def script(name: str) -> Callable[[Script], Script]:
    """Register a script under `name` (decorator), so a recipe's host can name it."""
    def add(fn: Script) -> Script:
        SCRIPTS[name] = fn
        return fn
    return add


def call(name: str, **arguments: Any) -> ToolCall:
    """A tool call the scripted model makes; the engine gives it an id."""
    return ToolCall(id="", name=name, arguments=arguments)


def reply(*calls: ToolCall, content: str | None = None, tokens: tuple[int, int] = (100, 10)) -> HostResponse:
    """One model turn: tool calls and/or text, with token usage."""
    return HostResponse(content=content, tool_calls=list(calls), usage=Usage(*tokens))


def turn_of(messages: list) -> int:
    """How many assistant turns the conversation already has (0 on the first call)."""
    return sum(1 for m in messages if m["role"] == "assistant")


class ScriptedConfig(HostConfig):
    script: str = ""
    delay_s: float = 0.0
    base_url: str | None = None


class ScriptedHost(Host):
    """A host whose replies come from a Python function `(messages, tools, ctx) -> HostResponse`: given directly
    (`ScriptedHost(fn)`) or by a registered name (`script:` in its config)."""

    provider = "scripted"
    Config = ScriptedConfig

    def __init__(self, config: "ScriptedConfig | Script | None" = None, context: Any = None):
        self.fn: Script | None = None
        if callable(config) and not isinstance(config, HostConfig):
            self.fn, config = config, None
        super().__init__(config or self.Config(provider="scripted"), context)
        self.seen: list[dict[str, Any]] = []   # what the host was sent, for assertions

    async def generate(self, messages, tools, ctx):
        self.seen.append({"messages": [dict(m) for m in messages], "tools": tools, "qid": ctx.task.qid})
        if self.config.delay_s:
            await asyncio.sleep(self.config.delay_s)
        fn = self.fn or SCRIPTS[self.config.script]
        return fn(messages, tools, ctx)

    def default_site_local(self) -> bool:
        from clinseek.hosts.base import address_is_local

        return self.config.base_url is None or address_is_local(self.config.base_url)

    def describe(self):
        name = self.config.script or getattr(self.fn, "__name__", "inline")
        return {"provider": self.provider, "model": f"script:{name}", "base_url": self.config.base_url}


def make_task(**fields: Any):
    """A valid Task with defaults for every required field; override any of them."""
    from clinseek.tasks import Task

    data = {"qid": "q1", "subject_id": 1, "hadm_id": None, "prediction_time": datetime(2150, 1, 1, 12, 0),
            "task": "mortality", "task_type": "risk_prediction", "question": "Will the patient die in hospital?",
            "candidates": ["yes", "no"], "label": ["no"]}
    data.update(fields)
    return Task.model_validate(data)


def run_episode(toolsets: list, script: "Script | Host", task=None, *, limits=None, system: str = "system",
                user: str | None = None, open_toolsets: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one episode through the engine's loop; return (result, trajectory) as the run directory stores them."""
    from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox

    task = task or make_task()
    host = script if isinstance(script, Host) else ScriptedHost(script)
    if open_toolsets:
        for ts in toolsets:
            ts.open()
    try:
        runner = EpisodeRunner(task=task, run_index=0, host=host, toolbox=ToolBox.build(toolsets),
                               limits=limits or AgentLimits(), system=system, user=user or task.question)
        return asyncio.run(runner.run())
    finally:
        if open_toolsets:
            for ts in toolsets:
                ts.close()


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released): a host URL that is down, for tests of
    pre-flight checks and circuit breakers."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
