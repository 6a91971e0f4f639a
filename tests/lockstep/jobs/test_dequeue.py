"""Dequeue order and its index (requirement 6), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from lockstep.db import Database, count_statements
from lockstep.jobs import Jobs, TaskRegistry

BULK = 1_000_000
INNER_PICK = (
    "SELECT id FROM lockstep_jobs WHERE state = 'queued' AND queue = 'default' "
    "ORDER BY priority, run_at, id LIMIT 10"
)


async def test_priority_then_run_at_then_id(jobs: Jobs, tasks: TaskRegistry) -> None:
    """Requirement 6: lower priority number first, then earlier run_at, then lower id."""

    @tasks.task(name="t")
    async def t(n: int) -> None: ...

    now = await jobs.store.now()
    at = [now - dt.timedelta(minutes=m) for m in (1, 5, 10)]
    spec = [  # (n, priority, run_at)
        (0, 5, at[2]),
        (1, 0, at[0]),
        (2, 0, at[1]),
        (3, -1, at[0]),
        (4, 0, at[1]),  # same priority and run_at as n=2: the id breaks the tie
        (5, 5, at[0]),
    ]
    ids = {n: await jobs.enqueue(t, {"n": n}, priority=p, run_at=r) for n, p, r in spec}
    order = []
    for _ in spec:
        (job,) = await jobs.store.claim("default", 1, "w", 30)
        order.append(job.args["n"])
    assert order == [3, 2, 4, 1, 0, 5]
    assert ids[2] is not None
    assert ids[4] is not None
    assert ids[2] < ids[4]
    # A batch claim returns the same order.
    assert await jobs.store.claim("default", 5, "w", 30) == []


async def _bulk_insert(database: Database) -> None:
    if database.backend == "sqlite":
        sql = f"""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BULK})
            INSERT INTO lockstep_jobs (task, queue, state, priority, args, run_at, created_at,
                                       max_attempts)
            SELECT 'bulk', CASE WHEN i % 2 = 0 THEN 'default' ELSE 'other' END, 'queued',
                   i % 10, '{{}}', '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000', 5
            FROM n
        """
    else:
        sql = f"""
            INSERT INTO lockstep_jobs (task, queue, state, priority, args, run_at, created_at,
                                       max_attempts)
            SELECT 'bulk', CASE WHEN i % 2 = 0 THEN 'default' ELSE 'other' END, 'queued',
                   i % 10, '{{}}', now() - interval '1 hour', now(), 5
            FROM generate_series(1, {BULK}) AS i
        """
    async with database.writer_engine.begin() as conn:
        await conn.execute(text(sql))
    async with database.writer_engine.connect() as conn:
        await conn.execute(text("ANALYZE lockstep_jobs"))
        await conn.commit()


async def test_dequeue_is_an_index_range_scan_with_a_million_queued_jobs(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database
) -> None:
    """Requirement 6: served by the (queue, priority, run_at, id) index over queued rows:
    no sort, no scan of the million waiting jobs, one statement per claim."""

    @tasks.task(name="bulk")
    async def bulk() -> None: ...

    await _bulk_insert(jobs_db)
    urgent = await jobs.enqueue(bulk, priority=-1)
    async with jobs_db.reader_engine.connect() as conn:
        if jobs_db.backend == "sqlite":
            rows = await conn.execute(text("EXPLAIN QUERY PLAN " + INNER_PICK))
            plan = " | ".join(str(row[-1]) for row in rows)
            assert "ix_lockstep_jobs_dequeue" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
        else:
            rows = await conn.execute(text("EXPLAIN " + INNER_PICK + " FOR UPDATE SKIP LOCKED"))
            plan = " | ".join(str(row[0]) for row in rows)
            assert "ix_lockstep_jobs_dequeue" in plan, plan
            assert "Sort" not in plan, plan
            assert "Seq Scan" not in plan, plan
    with count_statements(jobs_db.writer_engine) as counter:
        claimed = await jobs.store.claim("default", 3, "w", 30)
    assert counter.count == 1
    assert claimed[0].id == urgent
    assert [job.priority for job in claimed] == [-1, 0, 0]
