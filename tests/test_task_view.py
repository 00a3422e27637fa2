"""Hosts and tools never see the label: what they receive (the host's GenerateContext, the tool's Episode) has no
attribute path that reaches it, however the task file spelled the answer."""
from __future__ import annotations

import asyncio
from datetime import datetime

import spine_plugin as sp
from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox
from clinseek.tasks import Task

SENTINEL = "LABEL-SENTINEL-7f3a"


def _reachable(root, limit: int = 20_000) -> list[str]:
    """Every path from `root` through attributes, pydantic fields, dict items and sequences that ends at the
    sentinel or at an attribute named label."""
    found, seen, todo = [], set(), [(root, "ctx")]
    while todo and len(seen) < limit:
        obj, path = todo.pop()
        if id(obj) in seen or isinstance(obj, (int, float, bool, type(None), datetime, bytes)):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            if SENTINEL in obj:
                found.append(path)
            continue
        if isinstance(obj, dict):
            todo += [(v, f"{path}[{k!r}]") for k, v in obj.items()] + [(k, f"{path}.key") for k in obj]
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            todo += [(v, f"{path}[{i}]") for i, v in enumerate(obj)]
            continue
        attrs = dict(getattr(obj, "__dict__", {}) or {})
        for name in getattr(type(obj), "model_fields", {}) or {}:
            attrs[name] = getattr(obj, name, None)
        for name in getattr(obj, "__dataclass_fields__", {}) or {}:
            attrs[name] = getattr(obj, name, None)
        for name, value in attrs.items():
            if name in ("label", "ground_truth"):
                found.append(f"{path}.{name}")
            todo.append((value, f"{path}.{name}"))
    return found


def test_no_path_from_what_hosts_and_tools_receive_reaches_the_label():
    task = Task.model_validate({"qid": "q1", "subject_id": 42, "prediction_time": "2150-03-01T08:00:00",
                                "task": "mortality", "question": "Will they die?", "candidates": ["yes", "no"],
                                "ground_truth": [SENTINEL], "output": SENTINEL, "answer": SENTINEL})
    assert task.label == [SENTINEL] and task.extra["output"] == SENTINEL
    seen: dict[str, object] = {}

    def script(messages, tools, ctx):
        seen["host"] = ctx
        if sp.turn_of(messages) == 0:
            return sp.reply(sp.call("notes_patient"))
        return sp.reply(sp.call("finish", answer=["no"]))

    sp.SCRIPTS["_label_probe"] = script
    host = sp.ScriptedHost(sp.ScriptedConfig(provider="scripted", script="_label_probe"))
    toolset = sp.NotesToolset(sp.NotesConfig())
    runner = EpisodeRunner(task=task, run_index=0, host=host, toolbox=ToolBox.build([toolset]),
                           limits=AgentLimits(), system="sys", user="user")
    result, _ = asyncio.run(runner.run())
    assert result["status"] == "completed"
    assert _reachable(seen["host"]) == []
    for episode in runner.episodes.values():
        assert _reachable(episode) == []
    # The probe itself finds the label when it is there.
    assert _reachable(task) != []
