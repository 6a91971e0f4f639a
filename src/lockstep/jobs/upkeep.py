"""The chores every worker shares, with no leader: make due scheduled jobs ready, rescue
jobs whose lease expired, write schedule ticks, prune old jobs, sample the depth gauges.
Each is safe to run by many workers at once (``SKIP LOCKED``, unique keys, conditional
updates)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import structlog

from lockstep.jobs.scheduler import Scheduler

if TYPE_CHECKING:
    from lockstep.jobs.runtime import Jobs

log = structlog.get_logger("lockstep.jobs")

PRUNE_EVERY = 60.0  # seconds between prune passes of one worker


class Upkeep:
    """Runs the shared chores every ``poll_interval`` (jittered) for one worker."""

    def __init__(
        self,
        jobs: Jobs,
        *,
        poll_interval: float,
        schedules: bool,
        wake: Callable[[str], None],
        wake_queues: Callable[[Iterable[str]], None],
        rng: random.Random,
    ) -> None:
        self.jobs = jobs
        self.poll_interval = poll_interval
        self.schedules = schedules
        self.wake = wake
        self.wake_queues = wake_queues
        self.rng = rng
        self.scheduler = Scheduler(jobs.database, jobs.registry)
        self._last_prune = float("-inf")
        self._last_stats = float("-inf")

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the database is away: try again next time
                log.warning("jobs_maintenance_failed", error=repr(exc))
            # Jitter keeps N workers from doing the upkeep in lock step.
            await asyncio.sleep(self.poll_interval * self.rng.uniform(0.8, 1.2))

    async def run_once(self) -> None:
        store, settings = self.jobs.store, self.jobs.settings
        due, expired = await store.due_work()
        if due:
            self.wake_queues(await store.stage())
        if expired:
            rescued = await store.rescue()
            for item in rescued:
                self.jobs.metrics.reclaims.labels(item.queue).inc()
                log.warning(
                    "job_reclaimed",
                    job=item.id,
                    task=item.task,
                    dead_worker=item.worker_id,
                    state=item.state,
                )
            self.wake_queues({item.queue for item in rescued})
        if self.schedules and self.jobs.registry.schedules and await self.scheduler.run_once():
            self.wake("*")
        now = time.monotonic()
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            await store.prune(settings.jobs_retention_seconds)
        if now - self._last_stats >= settings.jobs_metrics_seconds:
            self._last_stats = now
            await self.jobs.refresh_metrics()
