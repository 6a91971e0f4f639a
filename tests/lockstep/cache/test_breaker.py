"""The circuit breaker's decisions, on a fake clock (no servers)."""

from __future__ import annotations

import asyncio

import pytest

from lockstep.cache import CircuitBreaker, CircuitOpenError
from lockstep.cache.breaker import hold_seconds
from lockstep.testing import FakeClock


class Down(Exception):
    pass


async def ok() -> str:
    return "ok"


async def down() -> str:
    raise Down


def make(clock: FakeClock, failures: int = 3) -> tuple[CircuitBreaker, list[str]]:
    breaker = CircuitBreaker(failures=failures, open_seconds=1.0, clock=clock)
    changes: list[str] = []
    breaker.on_change = changes.append
    return breaker, changes


async def test_consecutive_failures_open_it_and_a_success_resets_the_count() -> None:
    clock = FakeClock()
    breaker, changes = make(clock)
    for _ in range(2):
        with pytest.raises(Down):
            await breaker.call(down)
    assert await breaker.call(ok) == "ok"  # the run of failures ends here
    for _ in range(2):
        with pytest.raises(Down):
            await breaker.call(down)
    assert breaker.state == "closed"
    with pytest.raises(Down):
        await breaker.call(down)
    assert breaker.state == "open"
    assert changes == ["open"]


async def test_open_fails_fast_without_calling() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, failures=1)
    rejected: list[None] = []
    breaker.on_reject = lambda: rejected.append(None)
    with pytest.raises(Down):
        await breaker.call(down)
    called: list[None] = []

    async def spy() -> str:
        called.append(None)
        return "ok"

    for _ in range(5):
        with pytest.raises(CircuitOpenError):
            await breaker.call(spy)
    assert called == []
    assert len(rejected) == 5


async def test_half_open_lets_one_probe_through_and_its_outcome_decides() -> None:
    clock = FakeClock()
    breaker, changes = make(clock, failures=1)
    with pytest.raises(Down):
        await breaker.call(down)
    clock.advance(0.5)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)  # still open
    clock.advance(0.5)
    assert breaker.state == "half_open"

    # While the probe is in flight, every other call fails fast.
    release = asyncio.Event()

    async def slow_probe() -> str:
        await release.wait()
        raise Down

    probe = asyncio.create_task(breaker.call(slow_probe))
    await asyncio.sleep(0)  # let the probe be admitted
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    release.set()
    with pytest.raises(Down):
        await probe
    assert breaker.state == "open"  # a failed probe opens it for another period
    clock.advance(1.0)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    assert changes == ["open", "half_open", "open", "half_open", "closed"]


async def test_a_cancelled_probe_leaves_the_next_call_to_probe() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, failures=1)
    with pytest.raises(Down):
        await breaker.call(down)
    clock.advance(1.0)
    started = asyncio.Event()

    async def hangs() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    probe = asyncio.create_task(breaker.call(hangs))
    await started.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state == "half_open"
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"


async def test_failing_since_is_when_the_earliest_failing_call_started() -> None:
    clock = FakeClock(start=100.0)
    breaker, _ = make(clock, failures=10)
    gate = asyncio.Event()

    async def fails_later() -> str:
        await gate.wait()
        raise Down

    first = asyncio.create_task(breaker.call(fails_later))  # starts at 100
    await asyncio.sleep(0)
    clock.advance(0.5)
    with pytest.raises(Down):
        await breaker.call(down)  # starts and fails at 100.5
    assert breaker.failing_since == 100.5
    gate.set()
    with pytest.raises(Down):
        await first
    assert breaker.failing_since == 100.0
    await breaker.call(ok)
    assert breaker.failing_since is None


def test_trip_opens_at_once_on_other_evidence() -> None:
    clock = FakeClock(start=10.0)
    breaker, changes = make(clock)
    breaker.trip(since=9.5)  # a heartbeat sent then was never answered
    assert breaker.state == "open"
    assert breaker.failing_since == 9.5
    assert changes == ["open"]
    breaker.trip()
    assert breaker.failing_since == 9.5


def test_the_writer_holds_until_a_lease_has_passed_since_failures_began() -> None:
    # No failure: no hold. A call that failed at once: hold the whole lease. A call that
    # timed out after more than a lease: no hold (every mirror already stopped trusting).
    assert hold_seconds(None, 0.25, now=10.0) == 0.0
    assert hold_seconds(10.0, 0.25, now=10.0) == 0.25
    assert hold_seconds(10.0, 0.25, now=10.1) == pytest.approx(0.15)
    assert hold_seconds(10.0, 0.25, now=10.5) == 0.0
