"""The episode loop: host turns, tool calls, the built-in finish tool, budgets and the evidence ledger."""
from __future__ import annotations

import asyncio
import copy
import inspect
import json
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from clinseek.errors import ClinseekError, ToolError
from clinseek.hosts.base import GenerateContext, Host, HostResponse, Usage
from clinseek.tasks import Task
from clinseek.toolsets import Binding, Episode, Toolset, ToolSpec, bound_text, validate_arguments

FINISH = "finish"
FINISH_SCHEMA = {
    "name": FINISH,
    "description": ("Give your final answer and end the task. `answer` is a list of strings, each one of the "
                    "candidates exactly as written when candidates are given. `evidence` lists the evidence ids "
                    "(such as E3) of the tool results your answer rests on."),
    "parameters": {
        "type": "object",
        "properties": {
            "answer": {"type": "array", "items": {"type": "string"}, "description": "the answer(s)"},
            "evidence": {"type": "array", "items": {"type": "string", "pattern": "^E[0-9]+$"},
                         "description": "evidence ids the answer rests on, e.g. [\"E2\", \"E5\"]"},
        },
        "required": ["answer"],
        "additionalProperties": False,
    },
}
REMINDER = ("You replied without calling a tool. Continue by calling a tool, or call `finish` with your answer "
            "(a list of candidates) and the evidence ids it rests on.")
STATUSES = ("completed", "budget_exhausted", "timeout", "error")


@dataclass
class AgentLimits:
    max_turns: int = 20
    max_tool_calls: int = 40
    timeout_s: float = 600.0
    on_text_reply: str = "remind"
    max_observation_chars: int = 8000
    max_cost_usd: float | None = None
    finish_on_last_turn: bool = True
    finish_after_repeated_turns: int = 2

    @classmethod
    def from_spec(cls, spec: Any) -> "AgentLimits":
        return cls(max_turns=spec.max_turns, max_tool_calls=spec.max_tool_calls, timeout_s=spec.timeout_s,
                   on_text_reply=spec.on_text_reply, max_observation_chars=spec.max_observation_chars,
                   max_cost_usd=spec.max_cost_usd, finish_on_last_turn=spec.finish_on_last_turn,
                   finish_after_repeated_turns=spec.finish_after_repeated_turns)


@dataclass
class ToolBox:
    """The tools of a run: specs by name and the toolset instance each belongs to."""

    toolsets: list[Toolset]
    specs: dict[str, tuple[ToolSpec, Toolset]] = field(default_factory=dict)

    @classmethod
    def build(cls, toolsets: list[Toolset]) -> "ToolBox":
        box = cls(toolsets=toolsets)
        for ts in toolsets:
            for spec in type(ts).tool_specs():
                if spec.name in box.specs or spec.name == FINISH:
                    raise ClinseekError(f"tool name {spec.name!r} is defined twice (toolset {ts.name!r})")
                box.specs[spec.name] = (spec, ts)
        return box

    def schemas(self, include_tools: bool = True, only: Any = None) -> list[dict[str, Any]]:
        """The tool schemas offered (all, or the names in `only`), finish last."""
        tools = [ts.tool_schema(spec) for name, (spec, ts) in self.specs.items() if only is None or name in only] \
            if include_tools else []
        return tools + [FINISH_SCHEMA]


def finish_schema(candidates: list[str]) -> dict[str, Any]:
    """finish, its `answer` items limited to the task's candidates when it has any (public, like the question),
    so a constrained host cannot answer outside them and every host sees the exact spellings."""
    if not candidates:
        return FINISH_SCHEMA
    schema = copy.deepcopy(FINISH_SCHEMA)
    schema["parameters"]["properties"]["answer"]["items"] = {"type": "string", "enum": list(candidates)}
    return schema


@dataclass
class EpisodeState:
    messages: list[dict[str, Any]]
    usage: Usage = field(default_factory=Usage)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    tool_counts: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    tool_calls: int = 0
    host_calls: int = 0
    cached_calls: int = 0
    host_s: float = 0.0
    tools_s: float = 0.0
    last_call_cost: float = 0.0
    answer: list[str] = field(default_factory=list)
    cited: list[str] = field(default_factory=list)
    status: str | None = None
    reason: str | None = None
    response_ids: list[str] = field(default_factory=list)
    seen_calls: dict[tuple[str, str], str] = field(default_factory=dict)  # (tool, arguments) -> evidence id
    repeated_calls: int = 0
    stuck_turns: int = 0  # turns in a row whose every call repeated an earlier one


def render_output(value: Any) -> str:
    if value is None:
        return "(no output)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def _call_key(call: Any) -> tuple[str, str]:
    return call.name, json.dumps(call.arguments, sort_keys=True, default=str)


def _answer_from_text(text: str, candidates: list[str]) -> list[str]:
    lowered = text.lower()
    if candidates:
        return [c for c in candidates if c.lower() in lowered]
    return [text.strip()] if text.strip() else []


async def _call_tool(spec: ToolSpec, toolset: Toolset, episode: Episode, arguments: dict[str, Any]) -> Any:
    args = validate_arguments(spec, arguments)
    if inspect.iscoroutinefunction(spec.fn):
        return await spec.fn(toolset, episode, **args)
    return await asyncio.to_thread(spec.fn, toolset, episode, **args)


class EpisodeRunner:
    """Runs one task once: binds the toolsets to the task, loops host turns and tool calls, returns records."""

    def __init__(self, *, task: Any, run_index: int, host: Host, toolbox: ToolBox, limits: AgentLimits,
                 system: str, user: str, use_tools: bool = True, price: Any = None, log: Any = None,
                 offered: Any = None):
        self.task = task
        self.run_index = run_index
        self.host = host
        self.toolbox = toolbox
        self.limits = limits
        self.use_tools = use_tools
        self.price = price
        self.log = log
        self.tool_schemas = toolbox.schemas(include_tools=use_tools, only=offered)[:-1] \
            + [finish_schema(list(getattr(task, "candidates", None) or []))]
        self.allowed = {s["name"] for s in self.tool_schemas}
        binding = Binding.from_task(task)
        # Hosts and tools get the task without its label (TaskView); only the engine keeps the Task.
        self.view = task.view() if isinstance(task, Task) else task
        self.episodes = {ts.name: Episode(binding=binding, task=self.view, run_index=run_index)
                         for ts in toolbox.toolsets}
        self.state = EpisodeState(messages=[{"role": "system", "content": system},
                                            {"role": "user", "content": user}])

    async def run(self) -> tuple[dict[str, Any], dict[str, Any]]:
        started = time.perf_counter()
        bound: list[Toolset] = []
        try:
            if self.use_tools:
                for ts in self.toolbox.toolsets:
                    await asyncio.to_thread(ts.bind, self.episodes[ts.name])
                    bound.append(ts)
            await asyncio.wait_for(self._loop(), timeout=self.limits.timeout_s)
        except asyncio.TimeoutError:
            self._end("timeout", f"wall time over {self.limits.timeout_s:g} s")
        except ClinseekError as exc:
            if getattr(exc, "aborts_run", False):
                raise  # e.g. a rejected API key: every episode would fail alike, so the run stops
            self._end("error", exc.render())
        except Exception as exc:  # noqa: BLE001 - an engine or plugin bug fails this episode, not the run
            self._end("error", f"{type(exc).__name__}: {exc}")
            if self.log:
                self.log(f"episode {self.task.qid}#{self.run_index} failed:\n{traceback.format_exc()}")
        finally:
            for ts in bound:
                try:
                    await asyncio.to_thread(ts.unbind, self.episodes[ts.name])
                except Exception:  # noqa: BLE001 - unbinding must not hide the episode's own outcome
                    pass
        return self._records(time.perf_counter() - started)

    def _end(self, status: str, reason: str | None = None) -> None:
        if self.state.status is None:
            self.state.status, self.state.reason = status, reason

    def _cost(self) -> float | None:
        return self.state.usage.cost(self.price)

    async def _loop(self) -> None:
        s, lim = self.state, self.limits
        while s.status is None:
            if s.turns >= lim.max_turns:
                self._end("budget_exhausted", f"max_turns ({lim.max_turns}) reached without finish")
                return
            if lim.max_cost_usd is not None:
                spent = self._cost() or 0.0
                if spent + s.last_call_cost > lim.max_cost_usd:
                    self._end("budget_exhausted", f"cost budget: ${spent:.4f} spent, the next call would "
                                                  f"exceed max_cost_usd ${lim.max_cost_usd:g}")
                    return
            s.turns += 1
            ctx = GenerateContext(task=self.view, run_index=self.run_index, turn=s.turns)
            tools = self._offered()
            if tools is not self.tool_schemas and self.host.limits_calls_in_decoding:
                tools, ctx.allowed = self.tool_schemas, [t["name"] for t in tools]
            t0 = time.perf_counter()
            before = self._cost() or 0.0
            resp: HostResponse = await self.host.generate(s.messages, tools, ctx)
            s.host_s += time.perf_counter() - t0
            s.host_calls += 1
            s.cached_calls += int(resp.cached)
            if not resp.cached:
                s.usage.add(resp.usage)
            s.last_call_cost = (self._cost() or 0.0) - before
            if resp.response_id:
                s.response_ids.append(resp.response_id)
            await self._handle(resp)

    def _offered(self) -> list[dict[str, Any]]:
        """The tools of this turn: only finish on the last turn, once the tool-call budget is spent (a
        constrained host then must answer; others see that nothing else is left) and after
        `finish_after_repeated_turns` turns in a row of nothing but repeated calls (a model that is stuck); else
        all of them."""
        s, lim = self.state, self.limits
        spent = lim.finish_on_last_turn and (s.turns >= lim.max_turns or s.tool_calls >= lim.max_tool_calls)
        stuck = 0 < lim.finish_after_repeated_turns <= s.stuck_turns
        if (spent or stuck) and len(self.tool_schemas) > 1:
            return [t for t in self.tool_schemas if t["name"] == FINISH]
        return self.tool_schemas

    async def _handle(self, resp: HostResponse) -> None:
        s = self.state
        calls = []
        for i, call in enumerate(resp.tool_calls):
            call_id = call.id or f"call_{s.turns}_{i + 1}"
            calls.append((call_id, call))
        message: dict[str, Any] = {"role": "assistant", "content": resp.content,
                                   "tool_calls": [{"id": cid, "name": c.name, "arguments":
                                                   c.arguments if c.error is None else
                                                   {"_raw": c.raw_arguments}} for cid, c in calls]}
        if resp.provider_data:
            message["provider_data"] = resp.provider_data
        if not calls:
            message.pop("tool_calls")
        s.messages.append(message)
        if not calls:
            self._text_reply(resp.content or "")
            return
        before = s.repeated_calls
        results = await asyncio.gather(*(self._one_call(cid, call) for cid, call in calls))
        s.messages.extend(results)
        s.stuck_turns = s.stuck_turns + 1 if s.repeated_calls - before == len(calls) else 0

    def _text_reply(self, text: str) -> None:
        mode = self.limits.on_text_reply
        if mode == "answer":
            self.state.answer = _answer_from_text(text, list(self.task.candidates))
            self._end("completed", "answered in text (on_text_reply: answer)")
        elif mode == "fail":
            self._end("error", "the model replied in text without calling a tool (on_text_reply: fail)")
        else:
            self.state.messages.append({"role": "user", "content": REMINDER})

    async def _one_call(self, call_id: str, call: Any) -> dict[str, Any]:
        s = self.state
        name = call.name
        base = {"role": "tool", "tool_call_id": call_id, "name": name}
        if name == FINISH:
            return {**base, **self._finish(call)}
        s.tool_calls += 1
        s.tool_counts[name] = s.tool_counts.get(name, 0) + 1
        is_error = first_of_its_kind = False
        t0 = time.perf_counter()
        if call.error is not None:
            text, is_error = f"Error: the arguments of {name} are not valid JSON ({call.error}). Call it again " \
                             f"with a JSON object matching its schema.", True
        elif name not in self.allowed:
            available = ", ".join(sorted(self.allowed))
            text, is_error = f"Error: there is no tool named {name!r}. Available tools: {available}.", True
        elif s.tool_calls > self.limits.max_tool_calls:
            text, is_error = (f"Error: the tool-call budget ({self.limits.max_tool_calls}) is used up. Call finish "
                              f"with your answer now."), True
        elif (key := _call_key(call)) in s.seen_calls:
            # Small models repeat a call turn after turn; the result cannot change (same patient, same cutoff).
            earlier = s.seen_calls[key]
            s.repeated_calls += 1
            text, is_error = (f"Error: {name} was already called with these arguments "
                              f"({f'result [{earlier}]' if earlier else 'in this turn'}); the result would be the "
                              f"same. Use it, call another tool or other arguments, or finish."), True
        else:
            s.seen_calls[key] = ""  # pending: a same call in this turn is refused, not run twice
            first_of_its_kind = True
            spec, toolset = self.toolbox.specs[name]
            try:
                text = render_output(await _call_tool(spec, toolset, self.episodes[toolset.name],
                                                      call.arguments))
            except ToolError as exc:
                text, is_error = f"Error: {exc}", True
            except Exception as exc:  # noqa: BLE001 - a failing tool is an observation, the episode goes on
                text, is_error = f"Error: {name} failed: {type(exc).__name__}: {exc}", True
                if self.log:
                    self.log(f"tool {name} raised in {self.task.qid}:\n{traceback.format_exc()}")
        s.tools_s += time.perf_counter() - t0
        eid = f"E{len(s.evidence) + 1}"
        full_len = len(text)
        text, truncated = bound_text(text, self.limits.max_observation_chars)
        if first_of_its_kind:
            if is_error:
                del s.seen_calls[_call_key(call)]  # a failed call may be tried again
            else:
                s.seen_calls[_call_key(call)] = eid
        s.evidence[eid] = {"tool": name, "arguments": call.arguments if call.error is None else None,
                           "turn": s.turns, "tool_call_id": call_id, "chars": full_len, "truncated": truncated,
                           "is_error": is_error}
        return {**base, "content": f"[{eid}] {text}", "evidence_id": eid, "truncated": truncated,
                "is_error": is_error}

    def _finish(self, call: Any) -> dict[str, Any]:
        s = self.state
        args = call.arguments if call.error is None else None
        # `response` is the reference system's name for the answer: models trained on its tools write it.
        answer = args.get("answer", args.get("response")) if isinstance(args, dict) else None
        if isinstance(answer, str):
            answer = [answer]
        if not isinstance(answer, list) or not all(isinstance(a, (str, int, float)) for a in answer):
            return {"content": "Error: finish needs `answer` as a list of strings, e.g. {\"answer\": [\"yes\"], "
                               "\"evidence\": [\"E2\"]}. Call finish again.", "is_error": True,
                    "evidence_id": None, "truncated": False}
        cited = args.get("evidence") or []
        if isinstance(cited, str):
            cited = [cited]
        cited = [str(c).strip("[] ") for c in cited]
        unknown = [c for c in cited if c not in s.evidence]
        s.answer = [str(a) for a in answer]
        s.cited = [c for c in cited if c in s.evidence]
        self._end("completed")
        note = f" Unknown evidence ids ignored: {', '.join(unknown)}." if unknown else ""
        return {"content": f"Answer recorded.{note}", "is_error": False, "evidence_id": None, "truncated": False}

    def _records(self, wall_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
        s, task = self.state, self.task
        status = s.status or "error"
        answer = s.answer if status == "completed" else []
        cost = self._cost()
        result = {
            "qid": task.qid, "run_index": self.run_index, "task": task.task, "task_type": task.task_type,
            "answer": answer, "label": list(task.label), "candidates": list(task.candidates),
            "status": status, "reason": s.reason, "usage": s.usage.as_dict(),
            "cost_usd": None if cost is None else round(cost, 8),
            "timings": {"wall_s": round(wall_s, 4), "host_s": round(s.host_s, 4), "tools_s": round(s.tools_s, 4)},
            "turns": s.turns, "tool_calls": s.tool_calls, "tool_counts": s.tool_counts,
            "cited_evidence": s.cited, "host_calls": s.host_calls, "cached_calls": s.cached_calls,
        }
        trajectory = {
            "qid": task.qid, "run_index": self.run_index, "task": task.model_dump(mode="json"),
            "messages": s.messages, "tools": self.tool_schemas, "evidence": s.evidence,
            "answer": answer, "cited_evidence": s.cited, "status": status, "reason": s.reason,
            "usage": s.usage.as_dict(), "cost_usd": result["cost_usd"], "response_ids": s.response_ids,
            "result": result,
        }
        return result, trajectory
