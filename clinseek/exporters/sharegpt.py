"""LLaMA-Factory ShareGPT rows (function calling), the dataset_info.json entry, and a validator of its rules.

LLaMA-Factory's data guide: `conversations` is a list of {from, value}; `human` and `observation` must sit at
odd positions (1st, 3rd, ...), `gpt` and `function_call` at even positions, so a valid conversation has an even
length and ends with the model. `system` is a string column and `tools` a JSON string of the tool schemas. A
function_call's value is the JSON of {"name", "arguments"} (a JSON list of them for parallel calls).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Iterable

from clinseek.exporters.common import TrainingExporter

HUMAN_SIDE = ("human", "observation")
MODEL_SIDE = ("gpt", "function_call")


def _turns(messages: list[dict[str, Any]], keep_thoughts: bool) -> list[dict[str, str]]:
    """Canonical messages -> ShareGPT turns, merging neighbours that would sit on the same side."""
    turns: list[dict[str, str]] = []
    pending_obs: list[str] = []

    def flush_obs() -> None:
        if pending_obs:
            value = pending_obs[0] if len(pending_obs) == 1 else json.dumps(pending_obs, ensure_ascii=False)
            turns.append({"from": "observation", "value": value})
            pending_obs.clear()

    for m in messages:
        role = m.get("role")
        if role == "tool":
            pending_obs.append(m.get("content") or "")
            continue
        flush_obs()
        if role == "user":
            text = m.get("content") or ""
            if turns and turns[-1]["from"] in HUMAN_SIDE:
                # e.g. the engine's nudge after a tool reply: fold it into the human-side turn before it
                turns[-1]["value"] += "\n\n" + text
            else:
                turns.append({"from": "human", "value": text})
        elif role == "assistant":
            calls = m.get("tool_calls") or []
            text = (m.get("content") or "").strip()
            if calls:
                payload = [{"name": c["name"], "arguments": c.get("arguments") or {}} for c in calls]
                value = json.dumps(payload[0] if len(payload) == 1 else payload, ensure_ascii=False)
                if keep_thoughts and text:
                    value = f"<think>{text}</think>{value}"  # LLaMA-Factory strips a leading think block
                turn = {"from": "function_call", "value": value}
            else:
                turn = {"from": "gpt", "value": text}
            if turns and turns[-1]["from"] in MODEL_SIDE:
                # two model turns in a row (a text reply, then a call): keep the later, it is what was acted on
                turns[-1] = turn
            else:
                turns.append(turn)
    flush_obs()
    return turns


def validate_sharegpt(row: dict[str, Any]) -> list[str]:
    """Problems LLaMA-Factory's sharegpt converter would reject the row for (empty list: valid)."""
    problems = []
    conv = row.get("conversations")
    if not isinstance(conv, list) or not conv:
        return ["conversations must be a non-empty list"]
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or set(turn) != {"from", "value"}:
            problems.append(f"turn {i}: must be an object with exactly `from` and `value`")
            continue
        if not isinstance(turn["value"], str):
            problems.append(f"turn {i}: value must be a string")
        allowed = HUMAN_SIDE if i % 2 == 0 else MODEL_SIDE
        if turn["from"] not in allowed:
            problems.append(f"turn {i}: `{turn['from']}` where one of {allowed} is required")
        if turn["from"] == "function_call":
            value = turn["value"]
            if value.startswith("<think>") and "</think>" in value:
                value = value.split("</think>", 1)[1]
            try:
                calls = json.loads(value)
            except json.JSONDecodeError:
                problems.append(f"turn {i}: function_call value is not JSON")
                continue
            for c in calls if isinstance(calls, list) else [calls]:
                if not isinstance(c, dict) or "name" not in c or "arguments" not in c:
                    problems.append(f"turn {i}: function_call needs name and arguments")
    if len(conv) % 2 != 0:
        problems.append(f"odd number of turns ({len(conv)}): the conversation must end with the model")
    if "system" in row and not isinstance(row["system"], str):
        problems.append("system must be a string")
    if "tools" in row:
        try:
            if not isinstance(json.loads(row["tools"]), list):
                problems.append("tools must be a JSON list")
        except (TypeError, json.JSONDecodeError):
            problems.append("tools must be a JSON string")
    return problems


class ShareGPTExporter(TrainingExporter):
    name: ClassVar[str] = "sharegpt"
    filename: ClassVar[str] = "sharegpt.jsonl"

    def convert(self, record: dict[str, Any]) -> dict[str, Any] | None:
        msgs = self.messages(record)
        system = "\n\n".join(m.get("content") or "" for m in msgs if m.get("role") == "system")
        conv = _turns([m for m in msgs if m.get("role") != "system"],
                      keep_thoughts=bool(self.options.get("keep_thoughts", False)))
        tools = [{"name": t["name"], "description": t.get("description", ""), "parameters": t.get("parameters")}
                 for t in record.get("tools") or []]
        row: dict[str, Any] = {"conversations": conv, "tools": json.dumps(tools, ensure_ascii=False)}
        if system:
            row["system"] = system
        if validate_sharegpt(row):
            return None  # e.g. a trajectory that never got past the prompt; counted by export_run
        return row

    def write(self, records: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
        paths = super().write(records, out_dir)
        info = {self.options.get("dataset_name", "clinseek_sft"): dataset_info_entry(self.filename)}
        info_path = out_dir / "dataset_info.json"
        info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return paths + [info_path]


def dataset_info_entry(file_name: str) -> dict[str, Any]:
    return {"file_name": file_name, "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                     "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}}
