"""What a running handler can reach: its job, progress reporting, abort checks, a fenced
transaction for exactly-once effects, and the worker's process pool.

A handler asks for it by naming its first parameter ``ctx``::

    @tasks.task
    async def import_file(ctx: JobContext, path: str) -> int:
        ctx.progress(0, total=100)
        async with ctx.transaction() as session:   # effects + completion, atomically
            session.add(...)
        return n
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.db import Database
from lockstep.jobs.errors import LeaseLostError
from lockstep.jobs.job import ClaimedJob
from lockstep.jobs.store import JobStore
from lockstep.jobs.task import seconds

R = TypeVar("R")


class Snooze(Exception):
    """Raise from a handler to run the job again after ``delay`` without spending an attempt
    (waiting for an external resource is not a failure)."""

    def __init__(self, delay: float | dt.timedelta = 0.0) -> None:
        value = seconds(delay) or 0.0
        if value < 0:
            raise ValueError("snooze delay must be >= 0")
        super().__init__(f"snoozed for {value}s")
        self.delay = value


class JobAborted(Exception):
    """Raised by :meth:`JobContext.raise_if_aborted` in a synchronous handler whose job was
    cancelled while running."""


class WorkerServices(Protocol):
    """What the worker lends a context (implemented by :class:`Worker`)."""

    worker_id: str
    store: JobStore

    def report_progress(self, job: ClaimedJob, payload: dict[str, Any]) -> None: ...

    async def flush_progress(self, job: ClaimedJob) -> None: ...

    async def run_in_process(self, fn: Callable[..., R], *args: Any) -> R: ...


class JobContext:
    """The running attempt of one job, as its handler sees it."""

    def __init__(
        self,
        job: ClaimedJob,
        services: WorkerServices,
        database: Database,
        state: Any,
        *,
        keeps_result: bool = False,
    ) -> None:
        self.job = job
        self.keeps_result = keeps_result
        self.database = database
        self.state = state
        """The object the worker was given as ``state`` (the application's services)."""
        self._services = services
        self._aborted = False  # a plain flag: read from handler threads, set on the loop
        self.completed = False

    @property
    def job_id(self) -> int:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def worker_id(self) -> str:
        return self._services.worker_id

    @property
    def aborted(self) -> bool:
        """True once the job has been cancelled while running (safe from any thread)."""
        return self._aborted

    def raise_if_aborted(self) -> None:
        """For synchronous handlers: raise :class:`JobAborted` if the job was cancelled.
        (An async handler is interrupted with ``CancelledError`` at its next ``await``.)"""
        if self._aborted:
            raise JobAborted(f"job {self.job.id} was aborted")

    def mark_aborted(self) -> None:
        self._aborted = True

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress; stored on the job row (latest value wins) and passed to the
        :meth:`Jobs.on_progress` listeners. Cheap and non-blocking; callable from the
        handler's thread in a synchronous handler."""
        payload: dict[str, Any] = {"current": current, "total": total, "message": message}
        self._services.report_progress(self.job, payload)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction that also marks this attempt succeeded, if and only if this
        attempt still owns the job when it commits.

        Whatever the block writes therefore happens exactly once per job, even if a
        presumed-dead earlier attempt is still running: the loser's transaction raises
        :class:`LeaseLostError` and is rolled back. Use it once, for the job's effects; the
        handler's return value is stored as the result afterwards.
        """
        if self.completed:
            raise RuntimeError(f"job {self.job.id} was already completed by a transaction")
        await self._services.flush_progress(self.job)  # stored while the attempt still runs
        async with self.database.writer() as session:
            yield session
            connection = await session.connection()
            owned = await self._services.store.finish_in(
                connection,
                self._services.worker_id,
                self.job.id,
                self.job.attempt,
                result_pending=self.keeps_result,
            )
            if not owned:
                raise LeaseLostError(
                    f"job {self.job.id} attempt {self.job.attempt} lost its lease; "
                    "its transaction was rolled back"
                )
        self.completed = True

    async def run_in_process(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` in the worker's process pool and return its result. ``fn`` and
        the args must be picklable (a module-level function). CPU-heavy work belongs here:
        it would otherwise stall every other job of this worker."""
        return await self._services.run_in_process(fn, *args)
