"""TRL SFTTrainer rows: `messages` with tool-call arguments as objects, and `tools` as function schemas.

Hugging Face chat templates read `tool_calls[].function.arguments` as a mapping and `tools` as a list of
`{"type": "function", "function": {...}}`; that is what `apply_chat_template(messages, tools=tools)` renders.
"""
from __future__ import annotations

from typing import Any, ClassVar

from clinseek.exporters.common import TrainingExporter, function_tools


def trl_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": m.get("content") or ""}
            if m.get("tool_calls"):
                msg["tool_calls"] = [{"id": c["id"], "type": "function",
                                      "function": {"name": c["name"], "arguments": c.get("arguments") or {}}}
                                     for c in m["tool_calls"]]
            out.append(msg)
        elif role == "tool":
            out.append({"role": "tool", "name": m.get("name"), "tool_call_id": m.get("tool_call_id"),
                        "content": m.get("content") or ""})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    return out


class TRLExporter(TrainingExporter):
    name: ClassVar[str] = "trl"
    filename: ClassVar[str] = "trl.jsonl"

    def convert(self, record: dict[str, Any]) -> dict[str, Any] | None:
        msgs = trl_messages(self.messages(record))
        if not any(m["role"] == "assistant" for m in msgs):
            return None
        return {"messages": msgs, "tools": function_tools(record.get("tools") or [])}
