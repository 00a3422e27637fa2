"""`provider: anthropic`: Claude through the Messages API (official `anthropic` SDK, imported on first use).

Canonical messages map to Messages API turns: system messages become the `system` parameter, tool results become
`tool_result` blocks in the next user turn (consecutive ones merged, as the API requires), assistant tool calls
become `tool_use` blocks. Thinking blocks (with their signatures) are kept in the assistant message's
`provider_data["anthropic_thinking"]` and replayed first in that turn, which extended thinking with tools requires.
"""
from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from clinseek.hosts.base import GenerateContext, HostResponse, ToolCall, Usage, address_is_local
from clinseek.hosts.errors import HostRequestRejected
from clinseek.hosts.provider import Failure, ServedConfig, ServedHost, ToolNames, status_failure

THINKING_KEY = "anthropic_thinking"
KEY_HINT = "set host.api_key: ${env:ANTHROPIC_API_KEY} (or export ANTHROPIC_API_KEY) to a valid key"


class AnthropicConfig(ServedConfig):
    provider: str = "anthropic"
    max_tokens: int | None = Field(default=4096, ge=1, description="required by the Messages API")
    top_k: int | None = Field(default=None, ge=1)
    thinking: dict[str, Any] | None = Field(
        default=None, description='extended thinking, e.g. {"type": "enabled", "budget_tokens": 4000}')
    tool_choice: dict[str, Any] | None = Field(default=None, description='e.g. {"type": "auto"}')
    prompt_cache: bool = Field(default=False,
                               description="cache_control on the system prompt, the tools and the "
                                           "conversation so far (each turn pays for its new part)")
    max_concurrency: int = Field(default=8, ge=1)


class AnthropicHost(ServedHost):
    provider = "anthropic"
    Config = AnthropicConfig
    config: AnthropicConfig
    default_base_url = "https://api.anthropic.com"

    def __init__(self, config: AnthropicConfig, context: Any = None):
        super().__init__(config, context)
        self._client = None
        self._client_loop = None

    def default_site_local(self) -> bool:
        # The public API is outside the site; a base_url pointing at a site gateway may be inside.
        return address_is_local(self.config.base_url)

    def client(self):
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            import anthropic

            key = self.api_key("ANTHROPIC_API_KEY")
            if not key:
                raise HostRequestRejected("no API key for the Anthropic API", where=self.where(), hint=KEY_HINT)
            options: dict[str, Any] = {"api_key": key, "max_retries": 0, "timeout": self.config.timeout_s}
            if self.config.base_url:
                options["base_url"] = self.config.base_url
            self._client = anthropic.AsyncAnthropic(**options)
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except RuntimeError:
                pass
            self._client = None

    def preflight_request(self) -> tuple[str, dict[str, str]] | None:
        base = (self.config.base_url or self.default_base_url).rstrip("/")
        headers = {"anthropic-version": "2023-06-01"}
        key = self.api_key("ANTHROPIC_API_KEY")
        if key:
            headers["x-api-key"] = key
        return f"{base}/v1/models", headers

    def build_request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.config
        names = ToolNames([t["name"] for t in tools])
        system, turns = to_anthropic_messages(messages, names)
        request: dict[str, Any] = {"model": cfg.model, "max_tokens": cfg.max_tokens or 4096, "messages": turns}
        if system:
            block: dict[str, Any] = {"type": "text", "text": system}
            if cfg.prompt_cache:
                block["cache_control"] = {"type": "ephemeral"}
            request["system"] = [block]
        if tools:
            request["tools"] = [{"name": names.wire(t["name"]), "description": t.get("description", ""),
                                 "input_schema": t.get("parameters") or {"type": "object", "properties": {}}}
                                for t in tools]
            if cfg.prompt_cache:
                request["tools"][-1]["cache_control"] = {"type": "ephemeral"}
            if cfg.tool_choice:
                request["tool_choice"] = cfg.tool_choice
        if cfg.prompt_cache and turns and turns[-1]["role"] == "user":
            # The conversation so far is the next turn's prefix: caching it makes each turn pay for its new part.
            last = dict(turns[-1]["content"][-1])
            last["cache_control"] = {"type": "ephemeral"}
            turns[-1]["content"][-1] = last
        for key in ("temperature", "top_p", "top_k", "thinking"):
            value = getattr(cfg, key)
            if value is not None:
                request[key] = value
        if cfg.stop:
            request["stop_sequences"] = cfg.stop
        if cfg.extra_body:  # the Messages API has no seed; `seed` is ignored here (docs/hosts.md)
            request["extra_body"] = dict(cfg.extra_body)
        return request

    async def _request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       ctx: GenerateContext) -> HostResponse:
        client = self.client()
        request = _fit_signature(self.build_request(messages, tools), client.messages.create)
        message = await client.messages.create(**request)
        return self.parse_message(message, tools)

    def parse_message(self, message: Any, tools: list[dict[str, Any]]) -> HostResponse:
        blocks = getattr(message, "content", None)
        if blocks is None:
            raise ValueError("the reply has no content")
        if not isinstance(blocks, list):
            raise ValueError(f"content is a {type(blocks).__name__}, not a list of blocks")
        names = ToolNames([t["name"] for t in tools])
        texts: list[str] = []
        calls: list[ToolCall] = []
        thinking: list[dict[str, Any]] = []
        for i, block in enumerate(blocks):
            kind = getattr(block, "type", None)
            if kind == "text":
                if not isinstance(getattr(block, "text", None), str):
                    raise ValueError(f"content[{i}].text is not a string")
                texts.append(block.text)
            elif kind == "tool_use":
                if not isinstance(getattr(block, "name", None), str) or not isinstance(getattr(block, "id", None),
                                                                                        str):
                    raise ValueError(f"content[{i}] (tool_use) has no name or id")
                args = block.input
                if isinstance(args, dict):
                    calls.append(ToolCall(id=block.id, name=names.canonical(block.name), arguments=args))
                else:
                    calls.append(ToolCall(id=block.id, name=names.canonical(block.name), arguments={},
                                          raw_arguments=str(args),
                                          error="the tool input must be a JSON object with named parameters"))
            elif kind in ("thinking", "redacted_thinking"):
                thinking.append(block.model_dump(mode="json", exclude_none=True))
        usage = Usage()
        u = getattr(message, "usage", None)
        if u is not None:
            read = getattr(u, "cache_read_input_tokens", None) or 0
            written = getattr(u, "cache_creation_input_tokens", None) or 0
            # The API counts cached tokens apart from input_tokens; Usage treats them as part of the input.
            usage = Usage(input_tokens=(u.input_tokens or 0) + read + written, output_tokens=u.output_tokens or 0,
                          cached_tokens=read)
        provider_data = {THINKING_KEY: thinking} if thinking else {}
        return HostResponse(content="\n\n".join(texts) if texts else None, tool_calls=calls, usage=usage,
                            response_id=getattr(message, "id", None),
                            finish_reason=getattr(message, "stop_reason", None), provider_data=provider_data)

    def _failure(self, exc: Exception) -> Failure:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            from clinseek.hosts.limits import retry_after_seconds

            headers = dict(exc.response.headers) if getattr(exc, "response", None) is not None else None
            return status_failure(exc.status_code, _server_message(exc), retry_after_seconds(headers),
                                  self.config.model, KEY_HINT)
        if isinstance(exc, anthropic.APIConnectionError):  # APITimeoutError too: a connect timeout is one
            return self._connection_failure(
                exc, isinstance(exc, anthropic.APITimeoutError),
                down_hint="check host.base_url and the network path to the API", timeout_hint="raise host.timeout_s",
                reset_hint="check the network path to the API (the connection was closed or reset)")
        if isinstance(exc, (anthropic.APIResponseValidationError, ValueError)):
            return Failure(f"the server sent a malformed reply: {exc}", True)
        return Failure(f"{type(exc).__name__}: {exc}", False)


def _fit_signature(request: dict[str, Any], create: Any) -> dict[str, Any]:
    """Send fields this SDK version has no parameter for (recent ones dropped temperature/top_p/top_k) in the body."""
    import inspect

    accepted = inspect.signature(create).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return request
    out, extra = {}, dict(request.get("extra_body") or {})
    for key, value in request.items():
        if key == "extra_body":
            continue
        if key in accepted:
            out[key] = value
        else:
            extra.setdefault(key, value)
    if extra:
        out["extra_body"] = extra
    return out


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
    return str(getattr(exc, "message", exc))[:500]


def to_anthropic_messages(messages: list[dict[str, Any]], names: ToolNames) -> tuple[str, list[dict[str, Any]]]:
    """Canonical messages -> (system text, Messages API turns alternating user / assistant)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    for m in messages:
        role = m["role"]
        if role == "system":
            system.append(m.get("content") or "")
        elif role == "user":
            add("user", [{"type": "text", "text": m.get("content") or "(empty)"}])
        elif role == "tool":
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m["tool_call_id"],
                                     "content": m.get("content") or "(no output)"}
            if m.get("is_error"):
                block["is_error"] = True
            add("user", [block])
        elif role == "assistant":
            blocks = list((m.get("provider_data") or {}).get(THINKING_KEY) or [])
            if m.get("content"):
                blocks.append({"type": "text", "text": m["content"]})
            for call in m.get("tool_calls") or []:
                blocks.append({"type": "tool_use", "id": call["id"], "name": names.wire(call["name"]),
                               "input": call.get("arguments") or {}})
            if not blocks:
                blocks.append({"type": "text", "text": "(no reply)"})
            add("assistant", blocks)
    for turn in turns:  # tool results must open a user turn
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    return "\n\n".join(s for s in system if s), turns
