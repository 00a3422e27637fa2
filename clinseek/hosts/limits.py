"""Per-host request limits (concurrency, requests and tokens per minute) and retry timing."""
from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping

WINDOW_S = 60.0


class RateLimiter:
    """Caps requests in flight, and optionally requests and tokens started in any sliding 60-second window.

    Token use is estimated before a request and corrected with the real usage after it (`Slot.settle`). The
    asyncio primitives are created on first use, inside the running loop.
    """

    def __init__(self, max_concurrency: int | None = None, requests_per_minute: int | None = None,
                 tokens_per_minute: int | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] | None = None):
        self.max_concurrency = max_concurrency
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self.clock = clock
        self.sleep = sleep or asyncio.sleep
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._window_lock: asyncio.Lock | None = None
        self._requests: deque[float] = deque()
        self._tokens: deque[list] = deque()  # [time, tokens]; mutable so settle() can correct it
        self.in_flight = 0
        self.peak_in_flight = 0

    def slot(self, estimated_tokens: int = 0) -> "Slot":
        return Slot(self, estimated_tokens)

    async def _enter(self, estimated_tokens: int) -> list | None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # asyncio primitives belong to one loop; a host may outlive one asyncio.run
            self._loop, self._semaphore, self._window_lock, self.in_flight = loop, None, None, 0
        if self.max_concurrency:
            if self._semaphore is None:
                self._semaphore = asyncio.Semaphore(self.max_concurrency)
            await self._semaphore.acquire()
        entry = None
        try:
            if self.rpm or self.tpm:
                entry = await self._wait_for_window(estimated_tokens)
        except BaseException:
            if self._semaphore is not None:
                self._semaphore.release()
            raise
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return entry

    def _exit(self) -> None:
        self.in_flight -= 1
        if self.max_concurrency and self._semaphore is not None:
            self._semaphore.release()

    async def _wait_for_window(self, estimated_tokens: int) -> list | None:
        if self._window_lock is None:
            self._window_lock = asyncio.Lock()
        async with self._window_lock:  # one waiter at a time keeps the order fair
            while True:
                now = self.clock()
                while self._requests and now - self._requests[0] >= WINDOW_S:
                    self._requests.popleft()
                while self._tokens and now - self._tokens[0][0] >= WINDOW_S:
                    self._tokens.popleft()
                wait = 0.0
                if self.rpm and len(self._requests) >= self.rpm:
                    wait = max(wait, WINDOW_S - (now - self._requests[0]))
                if self.tpm and self._tokens:
                    used = sum(t for _, t in self._tokens)
                    # A single request larger than the whole budget still goes, alone in its window.
                    if used + estimated_tokens > self.tpm:
                        wait = max(wait, WINDOW_S - (now - self._tokens[0][0]))
                if wait <= 0:
                    self._requests.append(now)
                    entry = [now, estimated_tokens]
                    if self.tpm:
                        self._tokens.append(entry)
                    return entry
                await self.sleep(min(wait, WINDOW_S) + 0.001)


class Slot:
    def __init__(self, limiter: RateLimiter, estimated_tokens: int):
        self.limiter = limiter
        self.estimated_tokens = estimated_tokens
        self._entry: list | None = None

    async def __aenter__(self) -> "Slot":
        self._entry = await self.limiter._enter(self.estimated_tokens)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.limiter._exit()

    def settle(self, actual_tokens: int) -> None:
        """Replace the estimate with the tokens the request really used."""
        if self._entry is not None:
            self._entry[1] = actual_tokens


def estimate_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]], max_tokens: int | None) -> int:
    """A cheap upper-ish estimate (4 characters per token) for the tokens-per-minute limiter."""
    chars = sum(len(str(m.get("content") or "")) + 16 for m in messages)
    chars += sum(len(str(t)) for t in tools)
    return chars // 4 + (max_tokens or 512)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(max_s, base_s * 2**attempt)."""
    delay = min(max_s, base_s * (2 ** attempt))
    return (rng or random).uniform(delay / 2, delay)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a server asked us to wait: `retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
