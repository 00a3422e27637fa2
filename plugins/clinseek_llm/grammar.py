"""Constrained decoding for tool calls: a GBNF grammar that admits only calls of the offered tools.

Each constrained assistant turn is: optional one line of text (no `<`, `{` or backtick), then one or more
`<tool_call>\n{"name": "<tool>", "arguments": {...}}\n</tool_call>` blocks, the same shape the Qwen / Hermes chat
templates render past calls in, so the model sees one format throughout. `arguments` follows the tool's JSON
schema (llama.cpp's own schema-to-GBNF converter, which ships with llama-cpp-python). `finish` is a tool like any
other, so "call a tool or finish" is the whole language; after the last block only end-of-turn can follow.
"""
from __future__ import annotations

import json
import re
from typing import Any


def _literal(text: str) -> str:
    return json.dumps(text)  # a GBNF string literal uses JSON's escapes


def tool_call_grammar(tools: list[dict[str, Any]], *, preamble_chars: int = 160, max_calls: int = 4) -> str:
    """GBNF text for one assistant turn that calls offered `tools` (provider-neutral schemas)."""
    from llama_cpp.llama_grammar import SchemaConverter  # the runtime's converter (pure Python)

    if not tools:
        raise ValueError("a constrained turn needs at least one tool")
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    alternatives = []
    for i, tool in enumerate(tools):
        params = tool.get("parameters") or {"type": "object", "properties": {}}
        params = {"additionalProperties": False, **params}  # only the schema's own fields
        args_rule = converter.visit(params, f"args-{i}")
        head = _literal('{"name": "' + tool["name"] + '", "arguments": ')
        converter._add_rule(f"call-{i}", f'{head} {args_rule} "}}"')
        alternatives.append(f"call-{i}")
    converter._add_rule("call-json", " | ".join(alternatives))
    repeat = f"{{0,{max_calls - 1}}}" if max_calls > 1 else "{0}"
    lines = [
        f'root ::= preamble? block ("\\n" block){repeat}',
        # One line of prose at most: no newline, tag, brace or backtick, so JSON cannot hide in it.
        f'preamble ::= [^<{{`\\n\\x00]{{1,{preamble_chars}}} "\\n"' if preamble_chars > 0 else 'preamble ::= "\\n"',
        'block ::= "<tool_call>\\n" call-json "\\n</tool_call>"',
    ]
    rules = converter.format_grammar()
    rules = re.sub(r"(?m)^root ::= .*\n?", "", rules)  # ours is the root
    return "\n".join(lines) + "\n" + rules
