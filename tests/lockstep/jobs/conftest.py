"""Jobs fixtures: a database with the jobs tables (and an ``effects`` table that handlers
write to, for exactly-once checks), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from lockstep.db import Database
from lockstep.jobs import Jobs, TaskRegistry, ensure_jobs_tables

from .fault_tasks import effects_metadata


def create_tables(connection: Any) -> None:
    ensure_jobs_tables(connection)
    effects_metadata.create_all(connection)


@pytest.fixture
async def jobs_db(database: Database) -> Database:
    """The ``database`` fixture with the jobs and effects tables created."""
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(create_tables)
    return database


@pytest.fixture
def tasks() -> TaskRegistry:
    """An empty registry; tests register their own handlers."""
    return TaskRegistry(default_queue="default")


@pytest.fixture
def jobs(jobs_db: Database, tasks: TaskRegistry) -> Jobs:
    return Jobs(jobs_db, tasks)


async def count_effects(database: Database, job_id: int | None = None) -> int:
    sql = "SELECT count(*) FROM effects" + (" WHERE job_id = :job" if job_id else "")
    async with database.reader() as session:
        return int(await session.scalar(text(sql), {"job": job_id}) or 0)


async def until(condition: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
    """Re-check ``condition`` until it holds; raise after ``within`` seconds.

    Only for what another *process* does (a worker subprocess's writes or files): there is
    no event to await across processes. In-process work is awaited on its events instead.
    """
    async with asyncio.timeout(within):
        delay = 0.01
        while not await condition():
            await asyncio.sleep(delay)  # noqa: sleep - polling a database condition
            delay = min(delay * 2, 0.2)


@pytest.fixture
async def run_worker(jobs: Jobs) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await run_worker(**options)`` starts a worker (stopped after the test)."""
    started: list[Any] = []

    async def start(**options: Any) -> Any:
        options.setdefault("poll_interval", 0.05)
        options.setdefault("lease", 3.0)
        options.setdefault("shutdown_timeout", 2.0)
        worker = jobs.worker(**options)
        await worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in reversed(started):
        await worker.stop()
