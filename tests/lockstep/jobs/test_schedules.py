"""Cron schedules written by any number of schedulers (requirement 7), on both backends.

A yearly schedule keeps the expected ticks independent of when the test runs: the missed
ticks are the last five New Years, the next one is the coming New Year.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from lockstep.db import Database
from lockstep.jobs import Jobs, TaskRegistry
from lockstep.jobs.scheduler import Scheduler

RunWorker = Callable[..., Awaitable[Any]]
YEARLY = "0 0 1 1 *"


async def seed_last_tick(jobs: Jobs, name: str, years_ago: int) -> int:
    """Pretend the schedule last enqueued New Year ``years_ago`` years back; returns the
    current year by the database clock."""
    now = await jobs.store.now()
    last = dt.datetime(now.year - years_ago, 1, 1, tzinfo=dt.UTC)
    async with jobs.database.writer() as session:
        await session.execute(
            text("INSERT INTO lockstep_job_schedules (name, last_tick) VALUES (:n, :t)"),
            {"n": name, "t": jobs.store.backend.bind_time(last)},
        )
    return now.year


async def schedule_jobs(database: Database, name: str) -> list[tuple[str, str]]:
    async with database.reader() as session:
        rows = await session.execute(
            text(
                "SELECT schedule_key, state FROM lockstep_jobs WHERE schedule_key LIKE :p "
                "ORDER BY run_at"
            ),
            {"p": f"{name}@%"},
        )
        return [(row.schedule_key, row.state) for row in rows]


def registry_with(policy: str | None) -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task(name="report")
    async def report(kind: str) -> None: ...

    if policy is not None:
        tasks.schedule("yearly", report, cron=YEARLY, args={"kind": "annual"}, catch_up=policy)  # type: ignore[arg-type]
    return tasks


async def test_exactly_one_job_per_tick_across_schedulers(
    jobs_db: Database, make_database: Callable[..., Database]
) -> None:
    """Requirement 7: N schedulers (separate connection pools, as separate processes
    would be), no leader: the unique (schedule, tick) key leaves one job per tick."""
    tasks = registry_with("all")
    jobs = Jobs(jobs_db, tasks)
    year = await seed_last_tick(jobs, "yearly", 5)
    url = jobs_db.settings.database_url
    schedulers = [Scheduler(make_database(url), tasks) for _ in range(5)]
    for _ in range(2):
        await asyncio.gather(*(scheduler.run_once() for scheduler in schedulers))
    rows = await schedule_jobs(jobs_db, "yearly")
    keys = [key for key, _ in rows]
    assert len(keys) == len(set(keys)) == 6
    assert keys == [f"yearly@{year + d}-01-01T00:00:00+00:00" for d in range(-4, 2)]
    assert [state for _, state in rows] == ["queued"] * 5 + ["scheduled"]
    job = (await jobs.list_jobs(limit=1))[0]
    assert job.args == {"kind": "annual"}


@pytest.mark.parametrize(("policy", "expected"), [("all", 6), ("latest", 2), ("none", 1)])
async def test_catch_up_policies(jobs_db: Database, policy: str, expected: int) -> None:
    """Requirement 7: missed ticks are enqueued all, latest only, or not at all; the next
    tick always is."""
    tasks = registry_with(policy)
    jobs = Jobs(jobs_db, tasks)
    year = await seed_last_tick(jobs, "yearly", 5)
    assert await Scheduler(jobs_db, tasks).run_once() == expected
    rows = await schedule_jobs(jobs_db, "yearly")
    assert len(rows) == expected
    assert rows[-1] == (f"yearly@{year + 1}-01-01T00:00:00+00:00", "scheduled")
    if policy == "latest":
        assert rows[0][0] == f"yearly@{year}-01-01T00:00:00+00:00"
    assert await Scheduler(jobs_db, tasks).run_once() == 0  # nothing due until next year


async def test_deleting_a_schedule_removes_its_pending_job(jobs_db: Database) -> None:
    """Requirement 7: a schedule no longer declared is removed with its pending jobs."""
    declared = registry_with("none")
    await Scheduler(jobs_db, declared).run_once()
    assert [state for _, state in await schedule_jobs(jobs_db, "yearly")] == ["scheduled"]
    await Scheduler(jobs_db, registry_with(None)).run_once()
    assert await schedule_jobs(jobs_db, "yearly") == []
    async with jobs_db.reader() as session:
        assert await session.scalar(text("SELECT count(*) FROM lockstep_job_schedules")) == 0


async def test_workers_run_schedule_ticks(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """Requirement 7: running workers enqueue and run ticks; three of them together still
    run every tick once."""
    ran: list[int] = []
    twice = asyncio.Event()

    @tasks.task(name="beat")
    async def beat(ctx: Any) -> None:
        ran.append(ctx.job_id)
        if len(ran) >= 2:
            twice.set()

    tasks.schedule("fast", beat, every=0.2)
    for _ in range(3):
        await run_worker()
    async with asyncio.timeout(20):
        await twice.wait()
        for job_id in ran[:2]:
            await jobs.result(job_id)
    assert len(ran) == len(set(ran))
    keys = [(await jobs.get(job_id)).schedule_key for job_id in ran[:2]]
    assert keys[0] != keys[1]
    assert all(key is not None and key.startswith("fast@") for key in keys)
