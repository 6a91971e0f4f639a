"""The jobs runtime of one application: enqueue, look, steer, await results, run workers.

jobs = Jobs(database, tasks, registry=prometheus_registry)
job_id = await jobs.enqueue(render_report, {"report_id": 7})      # own transaction
async with database.writer() as session:                          # or the caller's
    await jobs.enqueue(render_report, {"report_id": 8}, session=session)
async with jobs.worker(queues=["reports"], state=services):
    value = await jobs.result(job_id, timeout=60)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.db import Database
from lockstep.jobs.admin import JobAdmin
from lockstep.jobs.enqueue import ENQUEUED, NewJob, enqueue_many
from lockstep.jobs.errors import JobFailedError, ResultUnavailableError
from lockstep.jobs.job import JobInfo, JobProgress
from lockstep.jobs.metrics import JobMetrics, QueueStats
from lockstep.jobs.schema import JobState
from lockstep.jobs.store import JobStore
from lockstep.jobs.task import Task, TaskRegistry
from lockstep.settings import Settings

if TYPE_CHECKING:
    from lockstep.jobs.worker import Worker

ProgressListener = Callable[[JobProgress], Awaitable[None]]

log = structlog.get_logger("lockstep.jobs")


class Jobs:
    """Jobs of ``registry`` stored in ``database``; metrics in ``registry`` (Prometheus).

    Building it adds a commit hook to ``database`` so that jobs enqueued by this process
    wake this process's workers as soon as their transaction commits.
    """

    def __init__(
        self,
        database: Database,
        tasks: TaskRegistry,
        settings: Settings | None = None,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.database = database
        self.registry = tasks
        self.settings = settings or database.settings
        self.store = JobStore(database)
        self.admin = JobAdmin(database)
        self.metrics = JobMetrics(registry)
        self._workers: set[Worker] = set()
        self._listeners: list[ProgressListener] = []
        self.live_listeners: list[ProgressListener] = []
        self._finished = asyncio.Event()
        database.add_commit_hook(self._after_commit)

    # -- enqueueing ------------------------------------------------------------------------

    async def enqueue(
        self,
        task: Task | str,
        args: Mapping[str, Any] | None = None,
        *,
        session: AsyncSession | None = None,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | dt.timedelta | None = None,
        run_at: dt.datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        tenant: str | None = None,
    ) -> int | None:
        """Enqueue one job; in ``session``'s transaction if given, else in a transaction of
        its own. Returns the job id, or None when a live job holds its unique key.

        Raises :class:`UnknownTaskError` for a name not in the registry and
        :class:`JobArgumentsError` for args that are not JSON or do not fit the handler,
        before anything is written.
        """
        job = NewJob(
            task=self.registry.resolve(task),
            args=args,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            unique_key=unique_key,
            max_attempts=max_attempts,
            tenant=tenant,
        )
        return (await self.enqueue_many([job], session=session))[0]

    async def enqueue_many(
        self, jobs: Sequence[NewJob], *, session: AsyncSession | None = None
    ) -> list[int | None]:
        """Enqueue a batch in one transaction (``session``'s, or its own): the id of each
        input, or None where its unique key is taken."""
        for job in jobs:
            self.registry.resolve(job.task)
        if session is not None:
            return await enqueue_many(session, jobs)
        async with self.database.writer() as own:
            return await enqueue_many(own, jobs)

    async def _after_commit(self, session: AsyncSession) -> None:
        queues = session.info.get(ENQUEUED)
        if queues:
            for worker in list(self._workers):
                worker.wake_queues(queues)

    # -- workers -------------------------------------------------------------------------

    def worker(self, **options: Any) -> Worker:
        """A :class:`Worker` over this runtime (see its options); ``async with`` runs it."""
        from lockstep.jobs.worker import Worker

        return Worker(self, **options)

    def attach(self, worker: Worker) -> None:
        """Called by a worker of this process when it starts (local wake-ups)."""
        self._workers.add(worker)

    def detach(self, worker: Worker) -> None:
        self._workers.discard(worker)

    def job_finished(self) -> None:
        """Called by this process's workers after an attempt ends (wakes result waiters)."""
        event, self._finished = self._finished, asyncio.Event()
        event.set()

    def next_finish(self) -> asyncio.Event:
        """An event set when a worker of this process next records the end of an attempt.
        Take it *before* checking a job's state, then wait on it, so nothing is missed."""
        return self._finished

    # -- progress --------------------------------------------------------------------------

    def on_progress(self, listener: ProgressListener, *, live: bool = False) -> Callable[[], None]:
        """Call ``listener`` with every progress report stored by this process's workers;
        returns the function that unsubscribes it (the realtime layer's hook). With
        ``live`` every report as it is made instead, stored or not yet (on SQLite a job that
        holds the writer, an import, stores nothing until it commits)."""
        found = self.live_listeners if live else self._listeners
        found.append(listener)
        return lambda: found.remove(listener)

    async def publish_progress(self, progress: JobProgress) -> None:
        for listener in list(self._listeners):
            try:
                await listener(progress)
            except Exception:  # one broken listener must not stop the others
                log.exception("job_progress_listener_failed", job=progress.job_id)

    # -- looking and steering --------------------------------------------------------------

    async def get(self, job_id: int, *, tenant: str | None = None) -> JobInfo:
        """The job; raises :class:`JobNotFoundError`. The progress of a job running in this
        process is its latest report, even one not stored yet."""
        info = await self.admin.get(job_id, tenant=tenant)
        if info.state is JobState.RUNNING:
            for worker in self._workers:
                live = worker.live_progress(info.id, info.attempt)
                if live is not None:
                    return dataclasses.replace(info, progress=live)
        return info

    async def list_jobs(
        self,
        *,
        states: Iterable[JobState | str] | None = None,
        queue: str | None = None,
        task: str | None = None,
        tenant: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[JobInfo]:
        """Jobs newest first; page with ``before_id``."""
        return await self.admin.list_jobs(
            states=states, queue=queue, task=task, tenant=tenant, before_id=before_id, limit=limit
        )

    async def cancel(self, job_id: int, *, tenant: str | None = None) -> JobInfo:
        """Cancel a waiting job, or abort a running one; see :meth:`JobAdmin.cancel`."""
        return await self.admin.cancel(job_id, tenant=tenant)

    async def retry(self, job_id: int, *, tenant: str | None = None) -> JobInfo:
        """Run a failed / cancelled / aborted job again; see :meth:`JobAdmin.retry`."""
        return await self.admin.retry(job_id, tenant=tenant)

    async def discard(self, job_id: int, *, tenant: str | None = None) -> None:
        """Delete a finished job; see :meth:`JobAdmin.discard`."""
        await self.admin.discard(job_id, tenant=tenant)

    async def pause(self, queue: str) -> None:
        """No worker claims from ``queue`` until :meth:`resume`; running jobs finish."""
        await self.admin.set_paused(queue, True)

    async def resume(self, queue: str) -> None:
        await self.admin.set_paused(queue, False)

    async def stats(self) -> list[QueueStats]:
        """Live jobs per queue (every registered queue included)."""
        return await self.admin.stats(self.registry.queues)

    async def refresh_metrics(self) -> list[QueueStats]:
        """Sample :meth:`stats` into the depth and oldest-age gauges."""
        stats = await self.stats()
        self.metrics.observe_stats(stats)
        return stats

    async def result(self, job_id: int) -> Any:
        """The result of job ``job_id``, waiting for it to finish (bound the wait with
        ``asyncio.timeout``).

        Returns at once for a finished job; never waits on a job that cannot produce a
        result. Raises :class:`ResultUnavailableError` when it succeeded but its result was
        not kept (or expired), :class:`JobFailedError` when it failed, was cancelled or
        aborted, and :class:`JobNotFoundError` when there is no such job.
        """
        delay = 0.01
        while True:
            finished = self.next_finish()
            job, payload, pending = await self.admin.result_state(job_id)
            if job.state is JobState.SUCCEEDED and not pending:
                if payload is None:
                    why = "expired" if job.result_expires_at is not None else "not kept"
                    raise ResultUnavailableError(
                        f"job {job_id} succeeded but its result is {why}"
                        + (
                            " (the task keeps no result: result_ttl=0)" if why == "not kept" else ""
                        ),
                        details={"reason": why.replace(" ", "_")},
                    )
                return orjson.loads(payload)
            if job.state.is_final and not pending:
                raise JobFailedError(
                    f"job {job_id} ended {job.state.value}"
                    + (f": {job.error}" if job.error else ""),
                    state=job.state.value,
                    details={"reason": job.reason, "error": job.error},
                )
            # A worker of this process finishing anything wakes us early; other processes'
            # workers are seen by polling, backing off to the poll interval.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await finished.wait()
            delay = min(delay * 2, self.settings.jobs_poll_seconds)
