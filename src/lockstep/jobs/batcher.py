"""Coalesce many concurrent writes into one statement: the worker's finishes and progress.

Items submitted while a flush is running are flushed together next, so batches grow with
load and a lone item waits for nothing. A failing flush is retried with backoff for a
bounded time (a database restart), then its submitters get the error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

T = TypeVar("T")
R = TypeVar("R")

log = structlog.get_logger("lockstep.jobs")


class Batcher(Generic[T, R]):
    """``await submit(item)`` returns ``flush([..., item, ...])[i]`` for that item."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        name: str,
        max_batch: int = 500,
        give_up_after: float = 30.0,
    ) -> None:
        self._flush = flush
        self._name = name
        self._max_batch = max_batch
        self._give_up_after = give_up_after
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"lockstep-jobs-{self._name}")
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._flush_with_retry([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _flush_with_retry(self, items: list[T]) -> Sequence[R]:
        deadline = time.monotonic() + self._give_up_after
        delay = 0.05
        while True:
            try:
                return await self._flush(items)
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("jobs_flush_retry", batch=self._name, error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        """Wait for submitted items to be flushed."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        """Drop what is pending (shutdown gave up waiting)."""
        if self._task is not None:
            self._task.cancel()
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
