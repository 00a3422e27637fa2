"""Recover tool calls that a server returned as text instead of native tool calls.

Open models served without a tool parser (or with the wrong one) write their calls into the reply text. The
formats seen in practice:

- Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (one block per call; the last block
  may lack its closing tag when the server stopped on it)
- Llama 3: the whole reply is ``{"name": ..., "parameters": {...}}`` (optionally after ``<|python_tag|>``), a list
  of such objects, or several separated by ``;``
- Mistral: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` or ``[TOOL_CALLS]name[ARGS]{...}``
- Llama 3.1 custom: ``<function=name>{...}</function>``
- Qwen3-Coder / Qwen3.5 XML: ``<tool_call><function=name><parameter=key>value</parameter></function></tool_call>``
  (values follow the tool schema's types: strings stay text, other types are read as JSON)
- fenced blocks: ```` ```json {"name": ..., "arguments": {...}} ``` ```` (or a list)

Explicitly tagged formats accept any tool name (the engine tells the model when a name is unknown). Untagged JSON
(Llama 3 bare objects, fenced blocks) counts as a call only when its name is one of the offered tools, so a model
that answers in JSON is not misread. A call whose arguments do not parse keeps its raw text and gets `error`.
"""
from __future__ import annotations

import hashlib
import json
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterable

from clinseek.hosts.base import ToolCall

_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FUNCTION_TAG = re.compile(r"<function=([A-Za-z0-9_.\-]+)>\s*(.*?)\s*(?:</function>|$)", re.S)
_FENCE = re.compile(r"```(?:json|tool_call|tool_code)?\s*\n?(.*?)```", re.S)
_MISTRAL_NAMED = re.compile(r"\[TOOL_CALLS\]\s*([A-Za-z0-9_.\-]+)\s*\[ARGS\]\s*", re.S)
_NAME_IN_TEXT = re.compile(r'"name"\s*:\s*"([^"]+)"')
_PARAMETER = re.compile(r"<parameter=([^>\s]+)>(.*?)</parameter>", re.S)
_TYPES: ContextVar[dict[str, dict[str, Any]]] = ContextVar("textcall_types", default={})
_ARG_KEYS = ("arguments", "parameters", "args", "input")


@dataclass
class TextCalls:
    """What the parser found: the calls, and the reply text with the call markup removed."""

    calls: list[ToolCall] = field(default_factory=list)
    content: str | None = None


def parse_text_tool_calls(text: str | None, tool_names: Iterable[str] | None = None, *,
                          tools: list[dict[str, Any]] | None = None) -> TextCalls:
    """Find tool calls written as text. Returns no calls (and the text unchanged) when there are none.

    `tools` (provider-neutral schemas) may replace `tool_names`; their parameter types let XML-style parameters
    (`<parameter=x>5</parameter>`) become numbers, lists or objects where the schema says so.
    """
    if not text or not text.strip():
        return TextCalls([], text)
    if tools is not None:
        tool_names = [t["name"] for t in tools]
    known = set(tool_names) if tool_names is not None else None
    _TYPES.set(parameter_types(tools or []))
    for finder in (_hermes, _function_tags, _mistral, _bare_json, _fenced):
        found = finder(text, known)
        if found is not None and found.calls:
            _assign_ids(found.calls, text)
            return found
    return TextCalls([], text)


# Finders: each returns None when its format is absent. ---------------------------------------------------------

def _hermes(text: str, known: set[str] | None) -> TextCalls | None:
    if "<tool_call>" not in text:
        return None
    calls = [_call_from_json_text(m.group(1)) for m in _HERMES.finditer(text)]
    return TextCalls([c for c in calls if c is not None], _rest(_HERMES.sub("", text)))


def _function_tags(text: str, known: set[str] | None) -> TextCalls | None:
    if "<function=" not in text:
        return None
    calls = [_function_call(m.group(1), m.group(2)) for m in _FUNCTION_TAG.finditer(text)]
    return TextCalls(calls, _rest(_FUNCTION_TAG.sub("", text)))


def _mistral(text: str, known: set[str] | None) -> TextCalls | None:
    idx = text.find("[TOOL_CALLS]")
    if idx < 0:
        return None
    before, after = text[:idx], text[idx:]
    named = list(_MISTRAL_NAMED.finditer(after))
    if named:  # newer format: [TOOL_CALLS]name[ARGS]{...}, repeated
        calls = []
        for i, m in enumerate(named):
            end = named[i + 1].start() if i + 1 < len(named) else len(after)
            raw = after[m.end():end].strip()
            value, rest = _first_json_value(raw)
            calls.append(_make_call(m.group(1), raw if value is _NOTHING else json.dumps(value),
                                    parsed=None if value is _NOTHING else value))
        return TextCalls(calls, _rest(before))
    body = after[len("[TOOL_CALLS]"):].strip()
    value, rest = _first_json_value(body)
    if value is _NOTHING:
        name = _NAME_IN_TEXT.search(body)
        return TextCalls([_broken_call(name.group(1) if name else "", body)], _rest(before))
    items = value if isinstance(value, list) else [value]
    calls = [c for c in (_call_from_object(o, json.dumps(o)) for o in items) if c is not None]
    return TextCalls(calls, _rest(before + rest))


def _bare_json(text: str, known: set[str] | None) -> TextCalls | None:
    body = text.strip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>"):].strip()
    if not body or body[0] not in "[{":
        return None
    calls: list[ToolCall] = []
    rest = body
    while rest:
        value, tail = _first_json_value(rest)
        if value is _NOTHING:
            return None
        for obj in value if isinstance(value, list) else [value]:
            call = _call_from_object(obj, json.dumps(obj))
            if call is None or (known is not None and call.name not in known):
                return None
            calls.append(call)
        rest = tail.strip().lstrip(";").strip()
    return TextCalls(calls, None)


def _fenced(text: str, known: set[str] | None) -> TextCalls | None:
    if "```" not in text:
        return None
    calls: list[ToolCall] = []
    spans = []
    for m in _FENCE.finditer(text):
        value, tail = _first_json_value(m.group(1).strip())
        if value is _NOTHING or tail.strip():
            continue
        found = [_call_from_object(o, json.dumps(o)) for o in (value if isinstance(value, list) else [value])]
        if not found or any(c is None or (known is not None and c.name not in known) for c in found):
            continue
        calls.extend(c for c in found if c is not None)
        spans.append(m.span())
    if not calls:
        return None
    kept, last = [], 0
    for start, end in spans:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return TextCalls(calls, _rest("".join(kept)))


def split_thinking(text: str) -> tuple[str | None, str]:
    """Separate a leading <think>...</think> block (Qwen3, DeepSeek-R1 style) from the reply, so calls the model
    only considered while thinking are not taken as calls."""
    if "</think>" not in text:
        return None, text
    head, _, tail = text.partition("</think>")
    return head.replace("<think>", "").strip() or None, tail.strip()


# Helpers ---------------------------------------------------------------------------------------------------------

_NOTHING = object()
_DECODER = json.JSONDecoder()


def _first_json_value(text: str) -> tuple[Any, str]:
    """Decode the JSON value at the start of `text`; return it and what follows (or _NOTHING)."""
    text = text.lstrip()
    try:
        value, end = _DECODER.raw_decode(text)
    except ValueError:
        return _NOTHING, text
    return value, text[end:]


def _call_from_json_text(raw: str) -> ToolCall | None:
    raw = raw.strip()
    if not raw:
        return None
    if raw.startswith("<function="):  # Qwen3-Coder / Qwen3.5 XML inside <tool_call>
        m = _FUNCTION_TAG.match(raw)
        if m:
            return _function_call(m.group(1), m.group(2))
    value, tail = _first_json_value(raw)
    if value is _NOTHING or not isinstance(value, dict):
        name = _NAME_IN_TEXT.search(raw)
        return _broken_call(name.group(1) if name else "", raw)
    return _call_from_object(value, raw)


def _function_call(name: str, body: str | None) -> ToolCall:
    """`<function=name>` followed by a JSON object (Llama 3.1) or `<parameter=key>value</parameter>` tags."""
    body = (body or "").strip()
    if "<parameter=" not in body:
        return _make_call(name, body or "{}")
    types = _TYPES.get().get(name, {})
    args = {m.group(1): _coerce(m.group(2), types.get(m.group(1))) for m in _PARAMETER.finditer(body)}
    return ToolCall(id="", name=name, arguments=args, raw_arguments=body)


def _coerce(raw: str, json_type: Any) -> Any:
    """A parameter's text as the schema's type: strings stay text; anything else is read as JSON if it parses."""
    value = raw[1:] if raw.startswith("\n") else raw
    value = value[:-1] if value.endswith("\n") else value
    if json_type == "string" or (isinstance(json_type, list) and "string" in json_type):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def parameter_types(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{tool: {parameter: JSON-schema type}} from provider-neutral tool schemas."""
    out: dict[str, dict[str, Any]] = {}
    for t in tools:
        props = ((t.get("parameters") or {}).get("properties") or {})
        out[t["name"]] = {k: (v or {}).get("type") for k, v in props.items() if isinstance(v, dict)}
    return out


def _call_from_object(obj: Any, raw: str) -> ToolCall | None:
    """A {"name", "arguments"|"parameters"} object (OpenAI-style {"function": {...}} too) -> ToolCall."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None
    for key in _ARG_KEYS:
        if key in obj:
            args = obj[key]
            break
    else:
        args = {}
    if isinstance(args, str):
        return _make_call(name, args)
    return _make_call(name, json.dumps(args, ensure_ascii=False), parsed=args)


def _make_call(name: str, raw_args: str, parsed: Any = _NOTHING) -> ToolCall:
    if parsed is _NOTHING:
        parsed, problem = parse_arguments(raw_args)
    else:
        problem = None if isinstance(parsed, dict) else _not_object(parsed)
    if problem:
        return ToolCall(id="", name=name, arguments={}, raw_arguments=raw_args, error=problem)
    return ToolCall(id="", name=name, arguments=parsed, raw_arguments=raw_args)


def _broken_call(name: str, raw: str) -> ToolCall:
    return ToolCall(id="", name=name, arguments={}, raw_arguments=raw,
                    error="the tool call is not valid JSON; write it as "
                          '{"name": "<tool>", "arguments": {...}} with double-quoted keys and strings')


def parse_arguments(raw: str | None) -> tuple[dict[str, Any], str | None]:
    """Parse a tool call's argument text. Returns (arguments, None) or ({}, why it failed, for the model)."""
    if raw is None or not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return {}, f"the arguments are not valid JSON ({exc.msg} at character {exc.pos}); send one JSON object"
    if isinstance(value, str):  # some servers double-encode
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, dict):
        return {}, _not_object(value)
    return value, None


def _not_object(value: Any) -> str:
    return f"the arguments must be a JSON object with named parameters, not {type(value).__name__}"


def _rest(text: str) -> str | None:
    text = text.strip()
    return text or None


def _assign_ids(calls: list[ToolCall], text: str) -> None:
    # Deterministic ids: the same reply gives the same ids, so later turns still hit the response cache.
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:10]
    for i, call in enumerate(calls):
        call.id = f"call_{digest}_{i}"
