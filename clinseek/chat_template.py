"""Canonical messages and tool schemas in the shape Hugging Face chat templates (and TRL) expect.

Tool-call arguments stay mappings and tools become `{"type": "function", "function": {...}}`, which is what
`tokenizer.apply_chat_template(messages, tools=tools)` renders. Shared by the local transformers host, which
renders prompts this way, and the TRL exporter, which writes training rows this way.
"""
from __future__ import annotations

from typing import Any


def hf_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def function_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Provider-neutral schemas -> the OpenAI / Hugging Face `{"type": "function", "function": {...}}` shape."""
    return [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                              "parameters": t.get("parameters") or {"type": "object",
                                                                                     "properties": {}}}}
            for t in tools or []]
