"""`provider: openai`: any OpenAI-compatible chat-completions server (vLLM, SGLang, Ollama, llama.cpp, OpenAI).

Built on the official `openai` SDK (imported when the first request is made) with the SDK's own retries off:
retries, limits and timeouts are the engine's (see provider.py) so every provider behaves the same. When a server
answers tool calls as text, textcalls.py recovers them.
"""
from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from pydantic import Field, model_validator

from clinseek.hosts.base import GenerateContext, HostCheck, HostResponse, ToolCall, Usage, address_is_local
from clinseek.hosts.provider import Failure, ServedConfig, ServedHost, ToolNames, status_failure
from clinseek.hosts.textcalls import parse_arguments, parse_text_tool_calls, split_thinking

SHARD_SIZE = 16  # concurrent requests per HTTP connection pool


class OpenAIConfig(ServedConfig):
    provider: str = "openai"
    tool_choice: str | None = Field(default=None, description="auto | required | none (server default if unset)")
    parallel_tool_calls: bool | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    constrain_tool_calls: bool = Field(
        default=False, description="every turn calls offered tools with schema-valid arguments (or finish): sends "
                                   "tool_choice: required, which vLLM, SGLang and llama-server --jinja enforce by "
                                   "guided decoding against the tools' schemas")

    @model_validator(mode="after")
    def _one_tool_choice(self) -> "OpenAIConfig":
        if self.constrain_tool_calls and self.tool_choice not in (None, "required"):
            raise ValueError(f"constrain_tool_calls needs tool_choice required (or unset), not {self.tool_choice!r}")
        return self


class OpenAIHost(ServedHost):
    provider = "openai"
    Config = OpenAIConfig
    config: OpenAIConfig
    default_base_url = "https://api.openai.com/v1"

    def __init__(self, config: OpenAIConfig, context: Any = None):
        super().__init__(config, context)
        self._shards: list[Any] = []
        self._shard_load: list[int] = []
        self._client_loop = None

    def default_site_local(self) -> bool:
        # No base_url means api.openai.com: outside the site.
        return address_is_local(self.config.base_url)

    # Clients ---------------------------------------------------------------------------------------------------
    # The HTTP pool scans all its connections whenever a response finishes, so one pool of 128 connections costs
    # milliseconds per request; several small pools (shards), each request on the least busy, keep that flat.
    def _clients(self) -> tuple[list[Any], list[int]]:
        loop = asyncio.get_running_loop()
        if not self._shards or self._client_loop is not loop:  # connection pools belong to one loop
            import openai

            # The SDK's own HTTP types (recent SDKs ship their own httpx fork; plain httpx objects may not fit).
            limits_type = type(openai.DEFAULT_CONNECTION_LIMITS)
            cfg = self.config
            count = max(1, math.ceil(cfg.max_concurrency / SHARD_SIZE))
            per_shard = math.ceil(cfg.max_concurrency / count)
            key = self.api_key("OPENAI_API_KEY") or "EMPTY"  # local servers often need none
            timeout = openai.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 30.0))
            self._shards = [openai.AsyncOpenAI(
                api_key=key, base_url=cfg.base_url, max_retries=0, timeout=timeout,
                http_client=openai.DefaultAsyncHttpxClient(limits=limits_type(
                    max_connections=per_shard * 2, max_keepalive_connections=per_shard * 2, keepalive_expiry=30)))
                for _ in range(count)]
            self._shard_load = [0] * count
            self._client_loop = loop
        return self._shards, self._shard_load

    def client(self):
        """The least busy client (for callers that want the SDK directly)."""
        shards, load = self._clients()
        return shards[min(range(len(load)), key=load.__getitem__)]

    async def aclose(self) -> None:
        shards, self._shards = self._shards, []
        for client in shards:
            try:
                await client.close()
            except RuntimeError:  # its loop is gone
                pass

    # One request ---------------------------------------------------------------------------------------------
    def build_request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        """The chat-completions request body."""
        cfg = self.config
        names = ToolNames([t["name"] for t in tools])
        request: dict[str, Any] = {"model": cfg.model, "messages": to_openai_messages(messages, names)}
        if tools:
            request["tools"] = [{"type": "function", "function": {
                "name": names.wire(t["name"]), "description": t.get("description", ""),
                "parameters": t.get("parameters") or {"type": "object", "properties": {}}}} for t in tools]
            if cfg.tool_choice or cfg.constrain_tool_calls:
                request["tool_choice"] = cfg.tool_choice or "required"
            if cfg.parallel_tool_calls is not None:
                request["parallel_tool_calls"] = cfg.parallel_tool_calls
        for key in ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty"):
            value = getattr(cfg, key)
            if value is not None:
                request[key] = value
        if cfg.max_tokens is not None:
            request["max_tokens"] = cfg.max_tokens
        if cfg.extra_body:  # merged at the top level, as the SDK's extra_body does
            request.update(cfg.extra_body)
        return request

    async def _request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       ctx: GenerateContext) -> HostResponse:
        # client.post (the SDK's documented raw call) skips create()'s per-field transform of the whole
        # conversation, which costs milliseconds per turn on long histories; the body is already wire format.
        # The reply comes back as plain JSON (cast_to=object): parse_completion checks every field it reads.
        body = self.build_request(messages, tools)
        shards, load = self._clients()
        i = min(range(len(load)), key=load.__getitem__)
        load[i] += 1
        try:
            completion = await shards[i].post("/chat/completions", cast_to=object, body=body)
        finally:
            load[i] -= 1
        return self.parse_completion(completion, tools)

    def parse_completion(self, completion: Any, tools: list[dict[str, Any]]) -> HostResponse:
        """A chat completion (its JSON, or an SDK object) -> HostResponse; MalformedReply names what is wrong."""
        if not isinstance(completion, dict) and hasattr(completion, "model_dump"):
            completion = completion.model_dump(mode="json", warnings=False)
        if not isinstance(completion, dict):
            raise MalformedReply(f"the reply is {_kind(completion)}, not a JSON object")
        choices = completion.get("choices")
        if not choices:
            raise MalformedReply("the reply has no choices")
        if not isinstance(choices, list):
            raise MalformedReply(f"choices is {_kind(choices)}, not a list")
        choice = choices[0]
        if not isinstance(choice, dict):
            raise MalformedReply(f"choices[0] is {_kind(choice)}, not an object")
        message = choice.get("message")
        if not isinstance(message, dict):
            raise MalformedReply(f"choices[0].message is {_kind(message)}, not an object")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise MalformedReply(f"choices[0].message.content is {_kind(content)}, not a string or null")
        raw_calls = message.get("tool_calls")
        if raw_calls is not None and not isinstance(raw_calls, list):
            raise MalformedReply(f"choices[0].message.tool_calls is {_kind(raw_calls)}, not a list")
        names = ToolNames([t["name"] for t in tools])
        calls: list[ToolCall] = []
        for i, tc in enumerate(raw_calls or []):
            at = f"choices[0].message.tool_calls[{i}]"
            fn = tc.get("function") if isinstance(tc, dict) else None
            if not isinstance(fn, dict):
                raise MalformedReply(f"{at} has no function object")
            name, raw, call_id = fn.get("name"), fn.get("arguments"), tc.get("id")
            if not isinstance(name, str) or not name:
                raise MalformedReply(f"{at}.function.name is {_kind(name)}, not a tool name")
            if isinstance(raw, dict):  # some servers send the object itself
                raw = json.dumps(raw, ensure_ascii=False)
            if raw is not None and not isinstance(raw, str):
                raise MalformedReply(f"{at}.function.arguments is {_kind(raw)}, not a JSON string")
            if call_id is not None and not isinstance(call_id, str):
                raise MalformedReply(f"{at}.id is {_kind(call_id)}, not a string")
            arguments, problem = parse_arguments(raw)
            calls.append(ToolCall(id=call_id or f"call_{i}", name=names.canonical(name),
                                  arguments=arguments, raw_arguments=raw, error=problem))
        provider_data: dict[str, Any] = {}
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            provider_data["reasoning_content"] = reasoning
        if content and "</think>" in content:  # a server without a reasoning parser
            thought, content = split_thinking(content)
            content = content or None
            if thought and "reasoning_content" not in provider_data:
                provider_data["reasoning_content"] = thought
        if not calls and content and self.config.text_tool_calls:
            found = parse_text_tool_calls(content, tools=tools or None)
            if found.calls:
                for call in found.calls:
                    call.name = names.canonical(call.name)
                calls, content = found.calls, found.content
                provider_data["text_tool_calls"] = True
        usage = Usage()
        u = completion.get("usage")
        if isinstance(u, dict):  # counts that are missing or not numbers count as 0
            details = u.get("prompt_tokens_details")
            usage.input_tokens = _count(u.get("prompt_tokens"))
            usage.output_tokens = _count(u.get("completion_tokens"))
            usage.cached_tokens = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
        response_id, finish = completion.get("id"), choice.get("finish_reason")
        return HostResponse(content=content, tool_calls=calls, usage=usage,
                            response_id=response_id if isinstance(response_id, str) else None,
                            finish_reason=finish if isinstance(finish, str) else None, provider_data=provider_data)

    # Pre-flight: GET <base_url>/models, which every OpenAI-compatible server answers ----------------------------
    def preflight_request(self) -> tuple[str, dict[str, str]] | None:
        base = (self.config.base_url or self.default_base_url).rstrip("/")
        return f"{base}/models", {"Authorization": f"Bearer {self.api_key('OPENAI_API_KEY') or 'EMPTY'}"}

    def preflight_notes(self, check: HostCheck) -> None:
        from clinseek.hosts.preflight import json_body

        data = json_body(check) if check.status == 200 else None
        listed = data.get("data") if isinstance(data, dict) else None
        ids = [m.get("id") for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
        if ids and self.config.model not in ids:
            shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
            check.notes.append(f"the server does not list model {self.config.model!r} (it serves: {shown}); "
                               f"check host.model")

    def _failure(self, exc: Exception) -> Failure:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return status_failure(exc.status_code, _server_message(exc), _retry_after(exc), self.config.model,
                                  "set host.api_key (e.g. api_key: ${env:OPENAI_API_KEY}) to a key this server "
                                  "accepts")
        if isinstance(exc, openai.APIConnectionError):  # APITimeoutError too: a connect timeout is one
            return self._connection_failure(
                exc, isinstance(exc, openai.APITimeoutError),
                down_hint="check host.base_url and that the server is running",
                timeout_hint="raise host.timeout_s, or lower host.max_concurrency if the server is saturated",
                reset_hint="check that the server is healthy (it closed or reset the connection)")
        if isinstance(exc, (openai.APIResponseValidationError, MalformedReply, ValueError)):
            return Failure(f"the server sent a malformed reply: {exc}", True,
                           hint="the reply does not follow the chat-completions format; check the server's log "
                                "and version (its tool-call or reasoning parser may have failed)")
        return Failure(f"{type(exc).__name__}: {exc}", False)


class MalformedReply(Exception):
    """The server answered, but not with a chat completion this host can read (the message says which field)."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _retry_after(exc: Any) -> float | None:
    from clinseek.hosts.limits import retry_after_seconds

    response = getattr(exc, "response", None)
    return retry_after_seconds(dict(response.headers)) if response is not None else None


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
    return str(getattr(exc, "message", exc))[:500]


def wire_arguments(call: dict[str, Any]) -> str:
    """The argument text to replay: what the model wrote when it did not parse (the engine keeps it as
    {"_raw": text}, a ToolCall-like dict as raw_arguments), else the parsed arguments as JSON."""
    args = call.get("arguments") or {}
    if isinstance(args, dict) and set(args) == {"_raw"} and isinstance(args["_raw"], str):
        return args["_raw"]
    if call.get("error") and isinstance(call.get("raw_arguments"), str):
        return call["raw_arguments"]
    return json.dumps(args, ensure_ascii=False)


def to_openai_messages(messages: list[dict[str, Any]], names: ToolNames) -> list[dict[str, Any]]:
    """Canonical messages -> chat-completions messages."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m["role"]
        if role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": m.get("content")}
            calls = m.get("tool_calls") or []
            if calls:
                msg["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                    "name": names.wire(c["name"]),
                    "arguments": wire_arguments(c)}} for c in calls]
            out.append(msg)
        elif role == "tool":
            out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m.get("content") or ""})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    return out
