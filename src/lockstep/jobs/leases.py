"""Keeping a worker's leases: renew them every heartbeat, notice the ones it lost, and
notice aborts requested for its running jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from lockstep.jobs.attempt import Attempt
from lockstep.jobs.store import JobStore

log = structlog.get_logger("lockstep.jobs")


class LeaseKeeper:
    """Heartbeats and abort checks for the attempts in ``running`` (job id → attempt)."""

    def __init__(
        self,
        store: JobStore,
        worker_id: str,
        running: Mapping[int, Attempt],
        *,
        lease: float,
        heartbeat: float,
        poll_interval: float,
        wake: Callable[[str], None],
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.running = running
        self.lease = lease
        self.heartbeat = heartbeat
        self.poll_interval = poll_interval
        self.wake = wake

    async def heartbeats(self) -> None:
        """Every ``heartbeat`` seconds: renew; stop attempts whose lease is gone (another
        attempt owns the job) or whose job is to be aborted."""
        while True:
            await asyncio.sleep(self.heartbeat)
            attempts = [a for a in self.running.values() if not a.finishing]
            if not attempts:
                continue
            try:
                owned = await self.store.heartbeat(
                    self.worker_id, [(a.job.id, a.job.attempt) for a in attempts], self.lease
                )
            except Exception as exc:  # leases may expire; the fence keeps that safe
                log.warning("jobs_heartbeat_failed", error=repr(exc))
                continue
            for attempt in attempts:
                if attempt.finishing or self.running.get(attempt.job.id) is not attempt:
                    continue
                if attempt.job.id not in owned:
                    attempt.stop("lost")
                elif owned[attempt.job.id]:
                    attempt.stop("aborted")

    async def watch_aborts(self) -> None:
        """Every poll interval: a read that finds aborts requested for running jobs (the
        path that works without LISTEN/NOTIFY)."""
        while True:
            await asyncio.sleep(self.poll_interval)
            ids = [i for i, a in self.running.items() if not a.finishing and a.stop_reason is None]
            if not ids:
                continue
            try:
                aborted = await self.store.aborts(ids)
            except Exception as exc:
                log.warning("jobs_abort_check_failed", error=repr(exc))
                continue
            for job_id in aborted:
                self.wake(f"a:{job_id}")
