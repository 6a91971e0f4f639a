"""Progress reports from running handlers: coalesced (the latest report per job wins),
stored on the job row while the attempt still owns it, then passed to listeners."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from lockstep.jobs.job import ClaimedJob, JobProgress
from lockstep.jobs.store import JobStore

if TYPE_CHECKING:
    from lockstep.jobs.runtime import Jobs

log = structlog.get_logger("lockstep.jobs")

COALESCE_SECONDS = 0.05


class ProgressReporter:
    """Collects reports from any thread and writes them from the worker's event loop."""

    def __init__(self, jobs: Jobs, store: JobStore, worker_id: str) -> None:
        self.jobs = jobs
        self.store = store
        self.worker_id = worker_id
        self._pending: dict[int, tuple[ClaimedJob, dict[str, Any]]] = {}
        # The latest report of every running job of this worker, stored or not yet: on
        # SQLite a job that holds the writer (an import) cannot store its progress until it
        # commits, but readers in this process can still see it.
        self.latest: dict[int, tuple[int, dict[str, Any]]] = {}
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live: set[asyncio.Future[None]] = set()
        self._loop_thread = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the worker's loop (reports from other threads are handed to it)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def report(self, job: ClaimedJob, payload: dict[str, Any]) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._queue(job, payload)
        else:
            loop.call_soon_threadsafe(self._queue, job, payload)

    def _queue(self, job: ClaimedJob, payload: dict[str, Any]) -> None:
        self._pending[job.id] = (job, payload)
        self.latest[job.id] = (job.attempt, payload)
        self._ready.set()
        for listener in list(self.jobs.live_listeners):
            task = asyncio.ensure_future(_quietly(listener, _progress(job, payload)))
            self._live.add(task)
            task.add_done_callback(self._live.discard)

    def forget(self, job: ClaimedJob) -> None:
        """The attempt ended: its live report is no longer news."""
        found = self.latest.get(job.id)
        if found is not None and found[0] == job.attempt:
            del self.latest[job.id]

    async def flush(self, job: ClaimedJob) -> None:
        """Store the job's pending report now (before its attempt completes)."""
        pending = self._pending.pop(job.id, None)
        if pending is not None:
            try:
                await self.write({job.id: pending})
            except Exception as exc:  # progress is advisory: never fail the job for it
                log.warning("jobs_progress_failed", job=job.id, error=repr(exc))

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            try:
                await self.write()
            except Exception as exc:
                log.warning("jobs_progress_failed", error=repr(exc))
            await asyncio.sleep(COALESCE_SECONDS)  # bursts collapse: the latest report wins

    async def write(
        self, pending: dict[int, tuple[ClaimedJob, dict[str, Any]]] | None = None
    ) -> None:
        if pending is None:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        items = [
            (job.id, job.attempt, orjson.dumps(payload).decode())
            for job, payload in pending.values()
        ]
        stored = await self.store.save_progress(self.worker_id, items)
        for job, payload in pending.values():
            if job.id in stored:
                await self.jobs.publish_progress(_progress(job, payload))


def _progress(job: ClaimedJob, payload: dict[str, Any]) -> JobProgress:
    return JobProgress(
        job_id=job.id,
        task=job.task,
        queue=job.queue,
        attempt=job.attempt,
        current=payload["current"],
        total=payload["total"],
        message=payload["message"],
    )


async def _quietly(listener: Any, progress: JobProgress) -> None:
    try:
        await listener(progress)
    except Exception:  # one broken listener must not stop the job or the others
        log.exception("job_progress_listener_failed", job=progress.job_id)
