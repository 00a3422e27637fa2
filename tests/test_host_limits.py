"""Request limits and retry timing, on a fake clock (no real waiting)."""
from __future__ import annotations

import asyncio
import random
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

from clinseek.hosts.limits import RateLimiter, backoff_delay, estimate_tokens, retry_after_seconds


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


async def test_requests_per_minute_window():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=3, clock=clock, sleep=clock.sleep)
    started = []
    for _ in range(7):
        async with limiter.slot():
            started.append(clock.now)
    # 3 at once, then each next batch only once the first of the window is 60 s old
    assert started[:3] == [1000.0] * 3
    assert all(s >= 1060.0 for s in started[3:6]) and started[6] >= 1120.0


async def test_tokens_per_minute_uses_real_usage_after_the_call():
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=1000, clock=clock, sleep=clock.sleep)
    async with limiter.slot(900) as slot:
        slot.settle(100)  # the estimate was pessimistic
    async with limiter.slot(800):
        pass
    assert clock.waits == []  # 100 + 800 fits
    async with limiter.slot(500):
        pass
    assert clock.now >= 1060.0  # 900 + 500 does not


async def test_one_request_larger_than_the_budget_still_goes_alone():
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=100, clock=clock, sleep=clock.sleep)
    async with limiter.slot(5000):
        pass
    assert clock.waits == []


async def test_concurrency_cap():
    limiter = RateLimiter(max_concurrency=2)

    async def one():
        async with limiter.slot():
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one() for _ in range(6)))
    assert limiter.peak_in_flight == 2 and limiter.in_flight == 0


def test_backoff_grows_with_jitter_and_cap():
    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 10.0, rng) for a in range(6)]
    assert 0.5 <= delays[0] <= 1 and 2 <= delays[2] <= 4 and all(5 <= d <= 10 for d in delays[4:])
    assert len({round(backoff_delay(3, 1.0, 100, rng), 6) for _ in range(5)}) > 1


def test_retry_after_forms():
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 25 <= retry_after_seconds({"retry-after": format_datetime(later, usegmt=True)}) <= 31
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None


def test_token_estimate_counts_messages_tools_and_output():
    small = estimate_tokens([{"role": "user", "content": "x"}], [], 100)
    big = estimate_tokens([{"role": "user", "content": "x" * 4000}], [{"name": "t", "description": "d" * 400}], 100)
    assert 100 < small < 120 and big > small + 1000


def test_a_limiter_survives_several_event_loops():
    limiter = RateLimiter(max_concurrency=1, requests_per_minute=100)

    async def burst():
        async def one():
            async with limiter.slot():
                await asyncio.sleep(0.001)

        await asyncio.gather(*(one() for _ in range(3)))

    asyncio.run(burst())
    asyncio.run(burst())  # would fail with "bound to a different event loop" if the primitives were kept
    assert limiter.peak_in_flight == 1
