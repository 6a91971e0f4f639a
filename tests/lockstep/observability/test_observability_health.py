"""Readiness checks: concurrent, bounded by a timeout, a failure is a result not an error."""

from __future__ import annotations

import asyncio

import pytest

from lockstep.observability.health import Readiness, run_checks


async def ok() -> None:
    return None


async def broken() -> None:
    raise ConnectionRefusedError("postgresql://user:secret@db/prod")


async def test_all_ok() -> None:
    readiness = await run_checks({"database": ok, "redis": ok})
    assert readiness == Readiness({"database": "ok", "redis": "ok"})
    assert (readiness.ok, readiness.status, readiness.failing) == (True, "ok", [])


async def test_failure_is_reported_by_exception_type_only() -> None:
    readiness = await run_checks({"database": ok, "redis": broken})
    assert dict(readiness.results) == {"database": "ok", "redis": "fail: ConnectionRefusedError"}
    assert (readiness.ok, readiness.status, readiness.failing) == (False, "fail", ["redis"])
    assert "secret" not in repr(readiness)


async def test_a_hanging_check_times_out() -> None:
    never = asyncio.Event()

    async def hangs() -> None:
        await never.wait()

    readiness = await run_checks({"hangs": hangs, "database": ok}, seconds=0.01)
    assert dict(readiness.results) == {"hangs": "fail: TimeoutError", "database": "ok"}


async def test_checks_run_concurrently() -> None:
    # Each check waits for the other to have started: this only passes if they overlap.
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def a() -> None:
        a_started.set()
        await b_started.wait()

    async def b() -> None:
        b_started.set()
        await a_started.wait()

    readiness = await run_checks({"a": a, "b": b}, seconds=30)
    assert readiness.ok


async def test_cancellation_propagates() -> None:
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(run_checks({"slow": slow}, seconds=30))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
