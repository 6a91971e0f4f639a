"""eager.start: a coroutine runs at once, and only what has to wait becomes a task that
behaves like the coroutine's own task would (result, exception, cancellation)."""

from __future__ import annotations

import asyncio

import pytest

from lockstep.realtime import eager


async def test_a_coroutine_that_never_waits_runs_at_once_without_a_task() -> None:
    ran: list[str] = []

    async def quick() -> None:
        ran.append("quick")

    before = len(asyncio.all_tasks())
    assert eager.start(quick()) is None
    assert ran == ["quick"]  # before the caller's next await
    assert len(asyncio.all_tasks()) == before


async def test_an_exception_before_the_first_wait_is_the_callers() -> None:
    async def fails() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        eager.start(fails())


async def test_what_waits_continues_in_a_task_with_the_coroutines_result() -> None:
    gate = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def waits() -> str:
        steps.append("before")
        value = await gate
        steps.append(f"after {value}")
        await asyncio.sleep(0)  # a bare yield: one turn of the loop
        steps.append("end")
        return "done"

    task = eager.start(waits())
    assert task is not None
    assert steps == ["before"]
    await asyncio.sleep(0)
    assert steps == ["before"]  # still waiting on the gate
    gate.set_result(7)
    assert await task == "done"
    assert steps == ["before", "after 7", "end"]


async def test_an_exception_after_a_wait_is_the_tasks() -> None:
    gate = asyncio.get_running_loop().create_future()

    async def fails_later() -> None:
        await gate
        raise ValueError("later")

    task = eager.start(fails_later())
    assert task is not None
    gate.set_exception(RuntimeError("the awaited future failed"))
    with pytest.raises(RuntimeError, match="awaited future failed"):
        await task


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    gate = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def waits() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = eager.start(waits())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]
    assert gate.cancelled()  # what it waited on was cancelled, as in a task of its own


async def test_a_coroutine_may_catch_its_cancellation_and_finish() -> None:
    gate = asyncio.get_running_loop().create_future()

    async def shrugs() -> str:
        try:
            await gate
        except asyncio.CancelledError:
            return "caught"
        return "not cancelled"

    task = eager.start(shrugs())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    assert await task == "caught"
