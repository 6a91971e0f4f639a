"""Run a coroutine at once, in the caller's turn of the event loop, and make a task only for
what is left if it has to wait (Python 3.12's eager tasks, for 3.11).

A WebSocket send that the transport takes without waiting (the common case: the socket is
writable) then costs no task, no scheduling and no second turn of the loop; a send that
waits for the client (flow control) continues in a task of its own, so the caller, the
hub handing one publication to every subscriber, never waits for one slow client.

Guarantees: the coroutine runs exactly as it would in a task — what it awaits is awaited
by the task, a cancelled task cancels the coroutine where it waits (it may catch it), its
result or exception is the task's. An exception raised before its first suspension
propagates to the caller of :func:`start`.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
    """Run ``coro`` up to its first suspension: None when it finished without one, else
    the task that runs the rest (see the module doc)."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_finish(coro, waiting))


async def _finish(coro: Coroutine[Any, Any, T], waiting: Any) -> T:
    result: T = await _rest(coro, waiting)
    return result


@types.coroutine
def _rest(coro: Coroutine[Any, Any, T], waiting: Any) -> Generator[Any, Any, T]:
    """Hand what ``coro`` waits on (a future, or None for one turn of the loop) to the task
    running us, and pass back what the task sends or throws — ``yield from`` for a
    coroutine that has already started."""
    while True:
        try:
            sent = yield waiting
        except BaseException as exc:  # cancellation (or anything thrown into the task)
            try:
                waiting = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
