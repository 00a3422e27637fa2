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
class HostCheck:
    """The answer to "is the host up?" (`Host.preflight`). Only a connection that could not be opened (refused,
    a name that does not resolve, no route, no connection in time) makes a host unreachable; any HTTP answer,
    401 and 404 included, shows a live server and goes into `notes`."""

    url: str  # what was tried, secrets redacted
    reachable: bool
    status: int | None = None
    problem: str | None = None  # why it could not be reached
    hint: str | None = None
    notes: list[str] = field(default_factory=list)
    body: bytes = field(default=b"", repr=False)  # the answer, for provider-specific notes


@dataclass
class GenerateContext:
    """What a host may know about the call besides the messages: used by the rules host, caches and logs."""

    task: Any = None
    run_index: int = 0
    turn: int = 0
    # The tool names this turn may call (None: every tool offered). Given only to hosts whose
    # `limits_calls_in_decoding` is true: they keep the full tool list in the prompt, so its cache still holds,
    # and limit what decoding can produce instead.
    allowed: list[str] | None = None


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

    @property
    def limits_calls_in_decoding(self) -> bool:
        """Whether this host enforces `GenerateContext.allowed` while decoding (constrained decoding)."""
        return False

    def preflight(self) -> HostCheck | None:
        """One cheap request that shows the model server is up, made before a run's first episode (blocking).
        None: nothing to check (in-process hosts)."""
        return None


# Inside the site: loopback, "this host" (0.0.0.0, ::, which reach the local machine) and the private ranges.
_SITE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "0.0.0.0/32", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "::/128", "fc00::/7"))
# Never inside: anything on the link can answer there (169.254.169.254 is the cloud metadata service).
_LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))


def _host_of(value: str) -> str:
    value = value.strip()
    bare = value.strip("[]").split("%")[0]
    if _ip_of(bare) is not None:  # a bare address (an IPv6 one has no brackets to tell it from a port)
        return bare.lower()
    host = urlparse(value if "://" in value else f"http://{value}").hostname or ""
    return host.split("%")[0].rstrip(".").lower()  # no IPv6 zone; "name." is "name"


def _ip_of(host: str) -> Any:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:169.254.169.254 is 169.254.169.254


def _never_inside(host: str) -> str | None:
    """Why `host` can never count as inside the site, listed or not; None when it may."""
    ip = _ip_of(host)
    if ip is not None and any(ip in ll for ll in _LINK_LOCAL):
        return "a link-local address, which never counts as inside the site"
    if ip is None and (host == "local" or host.endswith(".local")):
        return "an mDNS (.local) name, which any machine on the network can answer for"
    return None


def site_host_problem(entry: Any) -> str | None:
    """Why a `site_hosts` entry can never count as inside the site (or is not an entry at all); None if fine."""
    if not isinstance(entry, str) or not entry.strip():
        return "must be a host name, an IP address or a network such as 10.1.0.0/16"
    text = entry.strip()
    if "/" in text and "://" not in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return f"{text!r} is not a network (write e.g. 10.1.0.0/16)"
        if any(net.version == ll.version and net.overlaps(ll) for ll in _LINK_LOCAL):
            return f"{text!r} covers link-local addresses, which never count as inside the site"
        if net.prefixlen < (8 if net.version == 4 else 16):
            return f"{text!r} is too broad to be one site's network"
        return None
    host = _host_of(text)
    if not host:
        return f"{text!r} is not a host name or address"
    why = _never_inside(host)
    return f"{text!r} is {why}" if why else None


def address_is_local(url: str | None, site_hosts: Any = ()) -> bool:
    """Whether data sent to `url` stays inside the site: loopback, private ranges, localhost and *.localhost,
    and the site's own `site_hosts` (names, `*.domain` suffixes, addresses or networks). Link-local addresses
    (169.254.0.0/16, fe80::/10) and mDNS `*.local` names never are, listed or not."""
    if not url:
        return False
    host = _host_of(url)
    if not host:
        return False
    if _never_inside(host):
        return False
    ip = _ip_of(host)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    if ip is not None and any(ip in net for net in _SITE_NETWORKS):
        return True
    for entry in site_hosts or ():
        if site_host_problem(entry) is not None:
            continue
        text = entry.strip()
        if "/" in text and "://" not in text:
            if ip is not None and ip in ipaddress.ip_network(text, strict=False):
                return True
            continue
        if text.startswith("*."):
            suffix = text[1:].rstrip(".").lower()
            if ip is None and host.endswith(suffix):
                return True
            continue
        listed = _host_of(text)
        if host == listed or (ip is not None and ip == _ip_of(listed)):
            return True
    return False
