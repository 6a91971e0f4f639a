"""Transactional enqueue, unique keys and batch enqueue, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from lockstep.db import Database
from lockstep.jobs import (
    JobArgumentsError,
    Jobs,
    JobState,
    NewJob,
    TaskRegistry,
    UnknownTaskError,
    enqueue,
    enqueue_many,
)

from .conftest import count_effects


async def job_count(database: Database, where: str = "TRUE", **params: object) -> int:
    async with database.reader() as session:
        sql = f"SELECT count(*) FROM lockstep_jobs WHERE {where}"
        return int(await session.scalar(text(sql), params) or 0)


class Boom(Exception):
    pass


async def test_a_job_exists_iff_its_transaction_commits(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database
) -> None:
    """Requirement 4: transactional enqueue; rolled back → never exists; invisible until
    commit (a worker cannot claim it before)."""

    @tasks.task(name="noop")
    async def noop() -> None: ...

    async def enqueue_then_fail() -> None:
        async with jobs_db.writer() as session:
            assert await enqueue(session, noop) is not None
            raise Boom

    with pytest.raises(Boom):
        await enqueue_then_fail()
    assert await job_count(jobs_db) == 0

    async with jobs_db.writer() as session:
        job_id = await enqueue(session, noop)
        # Another connection (a worker's reads) does not see it before the commit.
        assert await job_count(jobs_db) == 0
        if jobs_db.backend == "postgresql":
            assert await jobs.store.claim("default", 10, "w", 30) == []
    assert await job_count(jobs_db, "id = :id", id=job_id) == 1
    claimed = await jobs.store.claim("default", 10, "w", 30)
    assert [job.id for job in claimed] == [job_id]


async def test_enqueue_with_its_own_transaction_and_savepoints(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database
) -> None:
    """Requirement 4: an enqueue in a rolled-back savepoint disappears with it."""

    @tasks.task(name="noop")
    async def noop() -> None: ...

    assert await jobs.enqueue("noop") is not None
    async with jobs_db.writer() as session:
        kept = await enqueue(session, noop)

        async def in_savepoint() -> None:
            async with session.begin_nested():
                await enqueue(session, noop)
                raise Boom

        with pytest.raises(Boom):
            await in_savepoint()
    assert await job_count(jobs_db) == 2
    assert (await jobs.get(kept or 0)).state is JobState.QUEUED


async def test_bad_input_is_refused_before_anything_is_written(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database
) -> None:
    """Bad input: unknown task name, unserializable args → a clear error at enqueue time."""

    @tasks.task(name="takes_x")
    async def takes_x(x: int) -> None: ...

    with pytest.raises(UnknownTaskError, match="no task named 'missing'"):
        await jobs.enqueue("missing", {"x": 1})
    with pytest.raises(JobArgumentsError, match="set"):
        await jobs.enqueue(takes_x, {"x": {1, 2}})
    with pytest.raises(JobArgumentsError, match="unexpected"):
        await jobs.enqueue(takes_x, {"x": 1, "y": 2})
    # A batch with one bad item writes none of them.
    with pytest.raises(JobArgumentsError):
        await jobs.enqueue_many([NewJob(takes_x, {"x": 1}), NewJob(takes_x, {"x": object()})])
    with pytest.raises(TypeError, match="registered Task"):
        async with jobs_db.writer() as session:
            await enqueue(session, "takes_x")  # type: ignore[arg-type]
    assert await job_count(jobs_db) == 0


async def test_unique_key_under_concurrency_with_rollbacks(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database
) -> None:
    """Requirement 5: 20 concurrent inserts of one key, half rolled back → exactly 1 job,
    enforced by the database's unique index over key + live states."""

    @tasks.task(name="once", unique="key:{n}")
    async def once(n: int) -> None: ...

    committed: list[int | None] = []

    async def insert(i: int) -> None:
        try:
            async with jobs_db.writer() as session:
                job_id = await enqueue(session, once, {"n": 1})
                if i % 2:
                    raise Boom
                committed.append(job_id)
        except Boom:
            pass

    await asyncio.gather(*(insert(i) for i in range(20)))
    assert await job_count(jobs_db) == 1
    winners = [job_id for job_id in committed if job_id is not None]
    assert len(committed) == 10
    assert len(winners) == 1
    assert await job_count(jobs_db, "unique_key = 'key:1'") == 1

    # Once the holder is no longer live, the key is free again.
    await jobs.cancel(winners[0])
    assert await jobs.enqueue(once, {"n": 1}) is not None
    assert await jobs.enqueue(once, {"n": 1}) is None


async def test_batch_insert_reports_id_or_skipped_per_input(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database
) -> None:
    """Requirement 5: batch insert reports id-or-skipped per input, in input order."""

    @tasks.task(name="item")
    async def item(n: int) -> None: ...

    existing = await jobs.enqueue(item, {"n": 0}, unique_key="taken")
    assert existing is not None
    batch = [
        NewJob(item, {"n": 1}, unique_key="a"),
        NewJob(item, {"n": 2}),
        NewJob(item, {"n": 3}, unique_key="a"),  # duplicate inside the batch
        NewJob(item, {"n": 4}, unique_key="b"),
        NewJob(item, {"n": 5}, unique_key="taken"),  # held by a live job
        NewJob(item, {"n": 6}),
    ]
    async with jobs_db.writer() as session:
        ids = await enqueue_many(session, batch)
    assert [i is None for i in ids] == [False, False, True, False, True, False]
    for job_id, new in zip(ids, batch, strict=True):
        if job_id is not None:
            assert (await jobs.get(job_id)).args == new.args
    # Large batches are chunked and keep their order.
    many = [NewJob(item, {"n": i}) for i in range(5_200)]
    ids = await jobs.enqueue_many(many)
    assert ids == sorted(ids)  # type: ignore[type-var]
    assert (await jobs.get(ids[5_100] or 0)).args == {"n": 5_100}
    assert await count_effects(jobs_db) == 0


async def test_delayed_and_timed_jobs_wait_as_scheduled(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database
) -> None:
    @tasks.task(name="later")
    async def later() -> None: ...

    delayed = await jobs.enqueue(later, delay=3600)
    assert (await jobs.get(delayed or 0)).state is JobState.SCHEDULED
    now = await jobs.store.now()
    past = await jobs.enqueue(later, run_at=now.replace(year=now.year - 1))
    assert (await jobs.get(past or 0)).state is JobState.QUEUED
    assert [j.id for j in await jobs.store.claim("default", 10, "w", 30)] == [past]
    with pytest.raises(JobArgumentsError, match="either delay or run_at"):
        await jobs.enqueue(later, delay=1, run_at=now)
