"""The Host protocol: one async call that turns canonical messages + tool schemas into a reply.

Canonical messages (what every host receives and the trajectory stores), plain dicts:
  {"role": "system", "content": str}
  {"role": "user", "content": str}
  {"role": "assistant", "content": str | None, "tool_calls": [{"id", "name", "arguments": dict}],
   "provider_data": {...}}   # e.g. Anthropic thinking blocks to replay; optional
   (arguments that did not parse are stored as {"_raw": "<the text as written>"}; hosts replay that text)
  {"role": "tool", "tool_call_id": str, "name": str, "content": str, "evidence_id": "E3",
   "truncated": bool, "is_error": bool}
Tool schemas are provider-neutral: {"name", "description", "parameters": JSON schema}. Each provider maps both.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None


class HostConfig(BaseModel):
    """Options every provider accepts. Providers subclass this with their own (extra keys refused)."""

    model_config = ConfigDict(extra="forbid")
    provider: str
    site_local: bool | None = None
    price: Price | None = None


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    def add(self, other: "Usage") -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens

    def cost(self, price: Price | None) -> float | None:
        if price is None:
            return None
        cached = min(self.cached_tokens, self.input_tokens)
        cached_rate = price.cached_input if price.cached_input is not None else price.input
        return ((self.input_tokens - cached) * price.input + cached * cached_rate
                + self.output_tokens * price.output) / 1e6

    def as_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cached_tokens": self.cached_tokens}


@dataclass
class ToolCall:
    """One tool call. `arguments` is a dict when it parsed; `error` says why it did not (the raw text is kept)."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw_arguments: str | None = None
    error: str | None = None


@dataclass
class HostResponse:
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    response_id: str | None = None
    finish_reason: str | None = None
    cached: bool = False  # served from the response cache
    provider_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerateContext:
    """What a host may know about the call besides the messages: used by the rules host, caches and logs."""

    task: Any = None
    run_index: int = 0
    turn: int = 0


class Host:
    """Base class for hosts. Subclasses set `provider` and `Config`, and implement `generate`."""

    provider: ClassVar[str] = ""
    Config: ClassVar[type[HostConfig]] = HostConfig

    def __init__(self, config: HostConfig, context: Any = None):
        self.config = config
        self.context = context

    async def generate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       ctx: GenerateContext) -> HostResponse:  # pragma: no cover - interface
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close clients."""

    @property
    def site_local(self) -> bool:
        """Whether data sent to this host stays inside the site. Explicit config wins; else from the address."""
        if self.config.site_local is not None:
            return self.config.site_local
        return self.default_site_local()

    def default_site_local(self) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        """Provider, model and address for the manifest (never secrets)."""
        return {"provider": self.provider}


def address_is_local(url: str | None) -> bool:
    """Loopback, private and link-local addresses (and localhost) count as inside the site."""
    if not url:
        return False
    host = urlparse(url if "://" in url else f"http://{url}").hostname or ""
    if host in ("localhost",) or host.endswith(".localhost") or host.endswith(".local"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local
