"""What the built-in providers share: config fields, the response cache, retries and request limits.

`CachingHost` wraps a provider's `_generate` with the response cache. `ServedHost` adds, for hosts reached over
the network, the retry loop (exponential backoff with jitter; Retry-After honoured; 4xx other than 429 never
retried), the per-host limiter (concurrency, requests and tokens per minute), request timeouts, the pre-flight
check and the circuit breaker (connection failures in a row, across episodes, stop the run). A provider implements
`_request` (one attempt) and `_failure` (what an exception from it means).
"""
from __future__ import annotations

import asyncio
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr

from clinseek.hosts.base import GenerateContext, Host, HostCheck, HostConfig, HostResponse
from clinseek.hosts.cache import ResponseCache, cache_key, open_cache, resolve_cache_path
from clinseek.hosts.errors import HostError, HostRequestRejected, HostUnreachable
from clinseek.hosts.limits import RateLimiter, backoff_delay, estimate_tokens
from clinseek.redact import add_secret, redact_text

# Config fields that do not change what the model answers, so they stay out of the cache key.
NOT_IN_CACHE_KEY = frozenset({
    "provider", "site_local", "price", "api_key", "cache", "timeout_s", "max_retries", "backoff_base_s",
    "backoff_max_s", "max_retry_wait_s", "max_concurrency", "requests_per_minute", "tokens_per_minute",
    "base_url", "model", "device", "preflight", "stop_after_connection_failures",
    "threads", "parallel", "gpu_layers", "prompt_cache",  # llamacpp: where and how fast, not what
})


class ProviderConfig(HostConfig):
    model: str = Field(description="model name the server serves, or a model directory / Hugging Face id")
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, description="most tokens the model may write per turn")
    seed: int | None = None
    stop: list[str] | None = None
    cache: bool | str = Field(default=False, description="response cache: false, true (default file) or a path")


class ServedConfig(ProviderConfig):
    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, description="use ${env:VAR}; never written to run records")
    extra_body: dict[str, Any] = Field(default_factory=dict,
                                       description="extra request fields, e.g. chat_template_kwargs")
    timeout_s: float = Field(default=300.0, gt=0, description="limit for one request")
    max_retries: int = Field(default=6, ge=0, description="retries on 429, 5xx, timeouts and broken replies")
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    max_retry_wait_s: float = Field(default=120.0, ge=0, description="cap on one wait, Retry-After included")
    max_concurrency: int = Field(default=64, ge=1, description="requests in flight at once to this host")
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    text_tool_calls: bool = Field(default=True, description="recover tool calls written as text in the reply")
    preflight: bool = Field(default=True, description="check the server is up before the first episode")
    stop_after_connection_failures: int = Field(
        default=3, ge=0, description="stop the run after this many connection failures in a row, across "
                                     "episodes (0: never; each episode then spends its retries)")


class CachingHost(Host):
    """A host whose replies may come from the response cache (`host.cache`)."""

    def __init__(self, config: ProviderConfig, context: Any = None):
        super().__init__(config, context)
        path = resolve_cache_path(getattr(config, "cache", False), context)
        self.cache: ResponseCache | None = open_cache(path) if path else None

    async def generate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       ctx: GenerateContext | None = None) -> HostResponse:
        ctx = ctx or GenerateContext()
        if self.cache is None:
            return await self._generate(messages, tools, ctx)
        key = cache_key(self.cache_identity(), messages, tools, ctx.run_index)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        response = await self._generate(messages, tools, ctx)
        self.cache.put(key, response, self.provider, getattr(self.config, "model", None))
        return response

    async def _generate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                        ctx: GenerateContext) -> HostResponse:  # pragma: no cover - interface
        raise NotImplementedError

    def cache_identity(self) -> dict[str, Any]:
        """Provider, address, model and every option that can change the reply."""
        sampling = self.config.model_dump(mode="json", exclude=set(NOT_IN_CACHE_KEY))
        return {"provider": self.provider, "base_url": getattr(self.config, "base_url", None),
                "model": getattr(self.config, "model", None), "sampling": sampling}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "model": getattr(self.config, "model", None)}
        base_url = getattr(self.config, "base_url", None)
        if base_url is not None or "base_url" in type(self.config).model_fields:
            out["base_url"] = redact_text(base_url) if isinstance(base_url, str) else base_url
        out["site_local"] = self.site_local
        return out

    def warn(self, message: str) -> None:
        warn = getattr(self.context, "warn", None) if self.context is not None else None
        if callable(warn):
            warn(message)


@dataclass
class Failure:
    """What one failed attempt means."""

    message: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None
    hint: str | None = None
    unreachable: bool = False  # no connection could be opened: counts toward the circuit breaker


class ServedHost(CachingHost):
    """A host behind an HTTP API: retries, limits and timeouts around `_request`."""

    config: ServedConfig
    default_base_url: str | None = None  # where the SDK goes when base_url is not set

    def __init__(self, config: ServedConfig, context: Any = None):
        super().__init__(config, context)
        self.limiter = RateLimiter(config.max_concurrency, config.requests_per_minute, config.tokens_per_minute)
        self._sleep = asyncio.sleep  # tests replace it to see the waits without waiting
        self._rng = random.Random()
        self.retries = 0  # over the host's life, for the manifest
        # Circuit breaker: connection failures in a row, host-wide; attempts that were in flight together count once.
        self.connection_failures = 0
        self._failure_mark = float("-inf")
        self._tripped: str | None = None
        if config.api_key is not None:
            add_secret(config.api_key.get_secret_value())

    async def _generate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                        ctx: GenerateContext) -> HostResponse:
        cfg = self.config
        estimate = estimate_tokens(messages, tools, cfg.max_tokens) if cfg.tokens_per_minute else 0
        failure: Failure | None = None
        attempts = cfg.max_retries + 1
        for attempt in range(attempts):
            if self._tripped is not None:  # another episode found the server gone: do not wait out retries
                raise self._unreachable()
            async with self.limiter.slot(estimate) as slot:
                started = time.perf_counter()
                try:
                    response = await self._request(messages, tools, ctx)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except HostError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every failure is classified below
                    failure = self._failure(exc)
                else:
                    response.latency_s = time.perf_counter() - started
                    slot.settle(response.usage.input_tokens + response.usage.output_tokens)
                    self.connection_failures, self._failure_mark = 0, float("-inf")
                    return response
            assert failure is not None
            failure.message = self.redact(failure.message)
            failure.hint = self.redact(failure.hint) if failure.hint else failure.hint
            self._count_connection_failure(failure, started)
            if not failure.retryable:
                if failure.status is not None:  # the server refused this request: every episode would fail alike
                    raise HostRequestRejected(failure.message, where=self.where(), hint=failure.hint,
                                              status=failure.status)
                raise HostError(failure.message, where=self.where(), hint=failure.hint)  # this episode only
            if attempt + 1 >= attempts:
                break
            if failure.retry_after is not None:
                delay = failure.retry_after + self._rng.uniform(0, min(1.0, 0.1 * failure.retry_after))
            else:
                delay = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_max_s, self._rng)
            delay = min(delay, cfg.max_retry_wait_s)
            self.retries += 1
            self.warn(f"{self.where()}: {failure.message}; retry {attempt + 1}/{cfg.max_retries} in {delay:.1f}s")
            await self._sleep(delay)
        assert failure is not None
        if failure.unreachable and cfg.stop_after_connection_failures:  # retries spent on a server that is gone
            self._tripped = failure.message.removeprefix("could not reach the server: ")
            raise self._unreachable()
        raise HostError(f"{failure.message} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})",
                        where=self.where(), status=failure.status, retryable=True,
                        hint=failure.hint or "the server kept failing; check it is up and not overloaded, or "
                                             "raise host.max_retries / host.timeout_s")

    async def _request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       ctx: GenerateContext) -> HostResponse:  # pragma: no cover - interface
        raise NotImplementedError

    def _failure(self, exc: Exception) -> Failure:
        return Failure(f"{type(exc).__name__}: {exc}", retryable=False)

    def _connection_failure(self, exc: Exception, timed_out: bool, *, down_hint: str, timeout_hint: str,
                            reset_hint: str) -> Failure:
        """An SDK's connection error as a Failure: the server could not be reached (counts toward the circuit
        breaker), no reply in time, or a connection that was closed or reset after it opened."""
        from clinseek.hosts.preflight import connect_failure

        down = connect_failure(exc, self.netloc())
        if down is not None:
            return Failure(f"could not reach the server: {down}", True, unreachable=True, hint=down_hint)
        if timed_out:
            return Failure(f"no reply within {self.config.timeout_s:g}s (timeout)", True, hint=timeout_hint)
        return Failure(f"the connection to the server failed: {exc.__cause__ or exc}", True, hint=reset_hint)

    # Circuit breaker -----------------------------------------------------------------------------------------
    def _count_connection_failure(self, failure: Failure, started: float) -> None:
        """Count a failed attempt toward the breaker; raise HostUnreachable once the limit is reached."""
        if not failure.unreachable:  # the server answered (an error, a timeout after connecting): it is there
            self.connection_failures, self._failure_mark = 0, float("-inf")
            return
        if started >= self._failure_mark:  # attempts that were already in flight when one failed count once
            self.connection_failures += 1
            self._failure_mark = time.perf_counter()
        limit = self.config.stop_after_connection_failures
        if limit and self.connection_failures >= limit:
            self._tripped = failure.message.removeprefix("could not reach the server: ")
            raise self._unreachable()

    def _unreachable(self) -> HostUnreachable:
        n = self.connection_failures
        return HostUnreachable(
            f"cannot reach {self.endpoint()}: {self._tripped}; {n} connection attempt{'s' * (n != 1)} in a row "
            f"failed, so the run stops", url=self.endpoint(), where=f"host {self.provider} {self.config.model}",
            hint="start the model server or fix host.base_url (host.stop_after_connection_failures sets how many "
                 "failures in a row stop a run; 0 never stops)")

    # Pre-flight ----------------------------------------------------------------------------------------------
    def endpoint(self) -> str:
        """The server's address as shown to the user (secrets redacted)."""
        return redact_text(self.config.base_url or self.default_base_url or "(the provider's default address)")

    def netloc(self) -> str:
        """HOST:PORT of the server, for messages."""
        from urllib.parse import urlsplit

        return urlsplit(self.endpoint()).netloc.rpartition("@")[2] or "the server"

    def preflight_request(self) -> tuple[str, dict[str, str]] | None:
        """The cheap GET that shows the server is up: (url, headers), or None to skip the check."""
        url = self.config.base_url or self.default_base_url
        return (url, {}) if url else None

    def preflight(self) -> HostCheck | None:
        from clinseek.hosts.preflight import PREFLIGHT_TIMEOUT_S, probe, status_note

        request = self.preflight_request()
        if request is None:
            return None
        url, headers = request
        check = probe(url, headers, timeout_s=min(self.config.timeout_s, PREFLIGHT_TIMEOUT_S))
        if check.reachable:
            status_note(check, url[len((self.config.base_url or self.default_base_url or "").rstrip("/")):] or "/")
            self.preflight_notes(check)
        check.notes = [self.redact(n) for n in check.notes]
        return check

    def preflight_notes(self, check: HostCheck) -> None:
        """Provider-specific remarks on a live server's answer (e.g. the model is not among those served)."""

    def where(self) -> str:
        return f"host {self.provider} {self.config.model}" + (f" at {redact_text(self.config.base_url)}"
                                                              if self.config.base_url else "")

    def api_key(self, env_var: str | None) -> str | None:
        if self.config.api_key is not None:
            return self.config.api_key.get_secret_value()
        key = os.environ.get(env_var) if env_var else None
        if key:
            add_secret(key)
        return key

    def redact(self, text: str) -> str:
        """Never echo the key (registered as a secret when the host is made or reads it), even when a server
        quotes it back, nor any other registered secret."""
        return redact_text(text)


def status_failure(status: int, message: str, retry_after: float | None, model: str,
                   key_hint: str) -> Failure:
    """Classify an HTTP error status the way every provider should."""
    if status == 429:
        return Failure(f"rate limited (HTTP 429): {message}", True, status, retry_after,
                       "lower host.max_concurrency or set host.requests_per_minute / tokens_per_minute")
    if status >= 500 or status in (408, 409):
        return Failure(f"server error (HTTP {status}): {message}", True, status, retry_after)
    if status in (401, 403):
        return Failure(f"the server refused the credentials (HTTP {status}): {message}", False, status,
                       hint=key_hint)
    if status == 404:
        return Failure(f"not found (HTTP 404): {message}", False, status,
                       hint=f"check host.model ({model!r}) and host.base_url; an OpenAI-compatible server lists "
                            f"the models it serves at <base_url>/models")
    if status == 413:
        return Failure(f"request too large (HTTP 413): {message}", False, status,
                       hint="the conversation outgrew the server's limit; lower agent turn or output budgets")
    return Failure(f"the server rejected the request (HTTP {status}): {message}", False, status,
                   hint="check the host's options (sampling parameters, extra_body, max_tokens) against what "
                        "the server accepts")


_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


class ToolNames:
    """Maps tool names to names a provider accepts (^[a-zA-Z0-9_-]{1,64}$) and back, one to one."""

    def __init__(self, names: list[str], max_len: int = 64):
        self.to_wire: dict[str, str] = {}
        self.from_wire: dict[str, str] = {}
        for name in names:
            safe = _UNSAFE.sub("_", name)[:max_len] or "tool"
            candidate, n = safe, 1
            while candidate in self.from_wire and self.from_wire[candidate] != name:
                n += 1
                suffix = f"_{n}"
                candidate = safe[:max_len - len(suffix)] + suffix
            self.to_wire[name] = candidate
            self.from_wire[candidate] = name

    def wire(self, name: str) -> str:
        return self.to_wire.get(name) or _UNSAFE.sub("_", name)[:64] or "tool"

    def canonical(self, name: str) -> str:
        return self.from_wire.get(name, name)
