"""Metrics and admin operations (requirement 13), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from lockstep.db import Database
from lockstep.jobs import Backoff, Jobs, JobState, JobStateError, TaskRegistry

RunWorker = Callable[..., Awaitable[Any]]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_metrics_depth_age_runtime_failures_retries_reclaims(
    jobs_db: Database, tasks: TaskRegistry
) -> None:
    """Requirement 13: depth, oldest job age, run time, failures, retries, reclaims."""
    registry = CollectorRegistry()
    jobs = Jobs(jobs_db, tasks, registry=registry)
    finished = asyncio.Event()

    @tasks.task(name="ok")
    async def ok() -> None: ...

    @tasks.task(name="flaky", max_attempts=2, backoff=Backoff(base=0))
    async def flaky() -> None:
        raise RuntimeError("nope")

    @tasks.task(name="parked", queue="parked")
    async def parked() -> None: ...

    @tasks.task(name="orphan", queue="orphans")
    async def orphan() -> None:
        finished.set()

    await jobs.pause("parked")
    await jobs.enqueue(parked)
    await jobs.enqueue(parked)
    # A job whose worker "died": claimed, lease behind the database clock.
    orphan_id = await jobs.enqueue(orphan) or 0
    await jobs.store.claim("orphans", 1, "dead-worker", 30)
    async with jobs_db.writer() as session:
        await session.execute(text("UPDATE lockstep_jobs SET lease_expires_at = created_at"))
    async with jobs.worker(queues=["default", "orphans"], poll_interval=0.05, lease=3):
        ok_id, flaky_id = await jobs.enqueue(ok), await jobs.enqueue(flaky)
        async with asyncio.timeout(20):
            await jobs.result(ok_id or 0)
            with pytest.raises(Exception, match="nope"):
                await jobs.result(flaky_id or 0)
            await finished.wait()
            await jobs.result(orphan_id)
    await jobs.refresh_metrics()
    assert sample(registry, "lockstep_jobs_depth", queue="parked", state="queued") == 2
    assert sample(registry, "lockstep_jobs_oldest_age_seconds", queue="parked") >= 0
    assert sample(registry, "lockstep_jobs_depth", queue="default", state="queued") == 0
    assert sample(registry, "lockstep_job_run_seconds_count", queue="default", task="ok") == 1
    assert sample(registry, "lockstep_job_failures_total", queue="default", task="flaky") == 2
    assert sample(registry, "lockstep_job_retries_total", queue="default", task="flaky") == 1
    assert sample(registry, "lockstep_job_reclaims_total", queue="orphans") == 1
    assert (
        sample(
            registry,
            "lockstep_jobs_finished_total",
            queue="default",
            task="flaky",
            outcome="failed",
        )
        == 1
    )
    assert sample(registry, "lockstep_job_wait_seconds_count", queue="default") == 3
    # The oldest-age gauge reads the database clock: a job waiting in a paused queue ages.
    stats = {s.queue: s for s in await jobs.stats()}
    assert stats["parked"].paused
    assert stats["parked"].oldest_queued_seconds >= 0


async def test_list_retry_cancel_discard(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """Requirement 13 (library side of list / retry / cancel; the API and CLI are tested
    in casebook)."""
    attempts: list[int] = []

    @tasks.task(name="fails_once", max_attempts=1)
    async def fails_once(ctx: Any) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            raise RuntimeError("first time")
        return "second time lucky"

    @tasks.task(name="waits", queue="idle")
    async def waits() -> None: ...

    await run_worker(queues=["default"])
    failing = await jobs.enqueue(fails_once, tenant="org-1") or 0
    async with asyncio.timeout(20):
        with pytest.raises(Exception, match="first time"):
            await jobs.result(failing)
        retried = await jobs.retry(failing)
        assert retried.max_attempts == 2
        assert not retried.state.is_final or retried.state is JobState.SUCCEEDED
        assert await jobs.result(failing) == "second time lucky"
    assert attempts == [1, 2]
    with pytest.raises(JobStateError, match="only failed"):
        await jobs.retry(failing)
    with pytest.raises(JobStateError, match="already finished"):
        await jobs.cancel(failing)

    waiting = await jobs.enqueue(waits) or 0
    assert (await jobs.cancel(waiting)).state is JobState.CANCELLED
    assert [j.id for j in await jobs.list_jobs(states=["cancelled"])] == [waiting]
    assert [j.id for j in await jobs.list_jobs(tenant="org-1")] == [failing]
    assert [j.id for j in await jobs.list_jobs(queue="idle")] == [waiting]
    assert [j.id for j in await jobs.list_jobs(limit=1, before_id=waiting)] == [failing]
    await jobs.discard(waiting)
    assert await jobs.list_jobs(queue="idle") == []
    with pytest.raises(Exception, match="not found"):
        await jobs.get(failing, tenant="org-2")
