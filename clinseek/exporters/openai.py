"""OpenAI chat fine-tuning rows: tool-call arguments as JSON strings, tool replies linked by tool_call_id."""
from __future__ import annotations

import json
from typing import Any, ClassVar

from clinseek.chat_template import function_tools
from clinseek.exporters.common import TrainingExporter


class OpenAIExporter(TrainingExporter):
    name: ClassVar[str] = "openai"
    filename: ClassVar[str] = "openai.jsonl"

    def convert(self, record: dict[str, Any]) -> dict[str, Any] | None:
        out = []
        for m in self.messages(record):
            role = m.get("role")
            if role == "assistant":
                msg: dict[str, Any] = {"role": "assistant", "content": m.get("content")}
                calls = m.get("tool_calls") or []
                if calls:
                    msg["tool_calls"] = [{"id": c["id"], "type": "function",
                                          "function": {"name": c["name"],
                                                       "arguments": json.dumps(c.get("arguments") or {},
                                                                               ensure_ascii=False)}}
                                         for c in calls]
                out.append(msg)
            elif role == "tool":
                out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m.get("content") or ""})
            else:
                out.append({"role": role, "content": m.get("content") or ""})
        if not any(m["role"] == "assistant" for m in out):
            return None
        # OpenAI checks this flag against the examples: true only when some turn really made several calls
        parallel = any(len(m.get("tool_calls") or []) > 1 for m in out)
        return {"messages": out, "tools": function_tools(record.get("tools") or []), "parallel_tool_calls": parallel}
