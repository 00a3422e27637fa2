"""TRL SFTTrainer rows: `messages` with tool-call arguments as objects, and `tools` as function schemas.

Hugging Face chat templates read `tool_calls[].function.arguments` as a mapping and `tools` as a list of
`{"type": "function", "function": {...}}`; that is what `apply_chat_template(messages, tools=tools)` renders.
"""
from __future__ import annotations

from typing import Any, ClassVar

from clinseek.chat_template import function_tools, hf_messages
from clinseek.exporters.common import TrainingExporter


class TRLExporter(TrainingExporter):
    name: ClassVar[str] = "trl"
    filename: ClassVar[str] = "trl.jsonl"

    def convert(self, record: dict[str, Any]) -> dict[str, Any] | None:
        msgs = hf_messages(self.messages(record))
        if not any(m["role"] == "assistant" for m in msgs):
            return None
        return {"messages": msgs, "tools": function_tools(record.get("tools") or [])}
