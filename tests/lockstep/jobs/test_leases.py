"""Leases, heartbeats, the rescuer and the (worker id, attempt) fence (requirements 2, 3),
on SQLite and PostgreSQL. Lease expiry is produced by the database clock: the lease is
stored behind "now", exactly what a missed heartbeat leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import insert, text

from lockstep.db import Database
from lockstep.exceptions import ConfigurationError
from lockstep.jobs import Jobs, JobState, LeaseLostError, TaskRegistry
from lockstep.jobs.outcome import Outcome
from lockstep.settings import load_settings

from .conftest import count_effects
from .fault_tasks import effects

RunWorker = Callable[..., Awaitable[Any]]


async def expire_leases(database: Database) -> None:
    """Put every running job's lease behind the database clock (its worker went quiet)."""
    async with database.writer() as session:
        await session.execute(
            text("UPDATE lockstep_jobs SET lease_expires_at = created_at WHERE state = 'running'")
        )


async def test_reclaims_count_as_attempts_and_a_crash_loop_ends_lost(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database
) -> None:
    """Requirement 3: a reclaim counts as an attempt; after max attempts the job is failed
    with reason "lost", so a job that kills its worker every time stops being retried."""

    @tasks.task(name="crashes", max_attempts=2)
    async def crashes() -> None: ...

    job_id = await jobs.enqueue(crashes)
    for attempt, expected in ((1, JobState.QUEUED), (2, JobState.FAILED)):
        (claimed,) = await jobs.store.claim("default", 5, f"worker-{attempt}", 30)
        assert claimed.attempt == attempt
        await expire_leases(jobs_db)
        (rescued,) = await jobs.store.rescue()
        assert (rescued.id, rescued.state, rescued.worker_id) == (
            job_id,
            expected.value,
            f"worker-{attempt}",
        )
    job = await jobs.get(job_id or 0)
    assert (job.state, job.reason, job.attempt, job.reclaims) == (JobState.FAILED, "lost", 2, 2)
    assert job.finished_at is not None
    assert [e["attempt"] for e in job.errors] == [1, 2]
    assert await jobs.store.claim("default", 5, "worker-3", 30) == []


async def test_a_presumed_dead_worker_cannot_overwrite_a_retry(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database
) -> None:
    """Completion is fenced by (worker id, attempt): once a job was reclaimed, the old
    attempt can neither finish it, renew it, nor commit effects with it."""

    @tasks.task(name="work")
    async def work() -> None: ...

    job_id = await jobs.enqueue(work) or 0
    (old,) = await jobs.store.claim("default", 1, "host-1:run-a", 30)
    await expire_leases(jobs_db)
    await jobs.store.rescue()
    (new,) = await jobs.store.claim("default", 1, "host-1:run-b", 30)
    assert (old.attempt, new.attempt) == (1, 2)

    stale = "host-1:run-a"
    assert await jobs.store.heartbeat(stale, [(job_id, 1)], 30) == {}
    assert await jobs.store.finish(stale, [(job_id, 1, Outcome("succeeded"))]) == set()
    retry = Outcome("retry", error="x", reason="error", delay=0)
    assert await jobs.store.finish(stale, [(job_id, 1, retry)]) == set()

    async def stale_effects() -> None:
        async with jobs_db.writer() as session:
            await session.execute(insert(effects).values(job_id=job_id, label="stale"))
            owned = await jobs.store.finish_in(
                await session.connection(), stale, job_id, 1, result_pending=False
            )
            if not owned:
                raise LeaseLostError("lost")

    with pytest.raises(LeaseLostError):
        await stale_effects()
    assert await count_effects(jobs_db) == 0
    assert (await jobs.get(job_id)).state is JobState.RUNNING

    current = "host-1:run-b"
    assert await jobs.store.heartbeat(current, [(job_id, 2)], 30) == {job_id: False}
    assert await jobs.store.finish(current, [(job_id, 2, Outcome("succeeded"))]) == {job_id}
    job = await jobs.get(job_id)
    assert (job.state, job.attempt, job.worker_id) == (JobState.SUCCEEDED, 2, current)


async def test_a_worker_stops_an_attempt_whose_lease_it_lost(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database, run_worker: RunWorker
) -> None:
    """The heartbeat tells a stalled worker its lease is gone: the handler is cancelled
    and nothing it would have recorded is written."""
    started = asyncio.Event()
    stopped = asyncio.Event()
    calls: list[int] = []

    @tasks.task(name="hold")
    async def hold() -> None:
        calls.append(1)
        if len(calls) > 1:
            return
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    await run_worker(lease=3.0, heartbeat=0.05, schedules=False)
    job_id = await jobs.enqueue(hold) or 0
    async with asyncio.timeout(20):
        await started.wait()
        # Meanwhile the job was reclaimed and handed to another worker's attempt 2 (one
        # atomic update, so the stalled worker's heartbeat cannot slip in between).
        async with jobs_db.writer() as session:
            await session.execute(
                text(
                    "UPDATE lockstep_jobs SET attempt = attempt + 1, worker_id = 'other', "
                    "reclaims = reclaims + 1 WHERE id = :id"
                ),
                {"id": job_id},
            )
        await stopped.wait()
        # 'other' dies too; this worker's rescuer takes it back and runs attempt 3.
        await expire_leases(jobs_db)
        assert await jobs.result(job_id) is None
    job = await jobs.get(job_id)
    assert (job.attempt, job.reclaims) == (3, 2)
    assert calls == [1, 1]


async def test_a_live_lease_is_never_stolen(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """Requirement 2: heartbeat <= lease / 3; a job running 10x its lease, watched by
    three workers whose rescuers run every poll interval, is taken exactly once."""
    lease = 0.3
    calls: list[str] = []

    @tasks.task(name="long")
    async def long_job() -> str:
        calls.append("run")
        await asyncio.sleep(lease * 10)  # noqa: sleep - the job's own work: ten leases long
        return "done"

    for _ in range(3):
        await run_worker(lease=lease, heartbeat=lease / 3, poll_interval=0.05)
    job_id = await jobs.enqueue(long_job) or 0
    async with asyncio.timeout(30):
        assert await jobs.result(job_id) == "done"
    job = await jobs.get(job_id)
    assert calls == ["run"]
    assert (job.attempt, job.reclaims) == (1, 0)


def test_heartbeat_must_be_at_most_a_third_of_the_lease(jobs: Jobs, tasks: TaskRegistry) -> None:
    """Requirement 2: the configuration cannot make a live lease expire between beats."""
    tasks.task(name="t")(lambda: None)
    with pytest.raises(ConfigurationError, match="third of the lease"):
        jobs.worker(lease=3.0, heartbeat=1.5)
    with pytest.raises(ConfigurationError, match="LOCKSTEP_JOBS_HEARTBEAT_SECONDS"):
        load_settings(jobs_lease_seconds=9, jobs_heartbeat_seconds=4)
    first, second = jobs.worker(name="host-1"), jobs.worker(name="host-1")
    # A restarted worker under the same name is a different fence holder.
    assert first.worker_id != second.worker_id
    assert first.worker_id.startswith("host-1:")
