"""Transactional enqueue: a job is written by the caller's own transaction, so it exists if
and only if that transaction commits, and no worker sees it before the commit.

    async with db.writer() as session:
        session.add(report)
        await session.flush()
        job_id = await enqueue(session, render_report, {"report_id": report.id})

Arguments are validated before anything is written (:class:`JobArgumentsError`). A job whose
unique key is already held by a live job (scheduled, queued or running) is skipped: the
database's unique index decides, so concurrent enqueuers cannot both win.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from lockstep.exceptions import ConfigurationError
from lockstep.jobs.backends import JobBackend, backend_for
from lockstep.jobs.errors import JobArgumentsError
from lockstep.jobs.task import Task, seconds

ENQUEUED = "lockstep.jobs.enqueued"
"""``session.info`` key: the queues that got ready jobs in this transaction (to wake this
process's workers after commit)."""

_COLUMNS = (
    ("task", "text"),
    ("queue", "text"),
    ("priority", "int"),
    ("args", "text"),
    ("run_at", "timestamptz"),
    ("delay", "float8"),
    ("max_attempts", "int"),
    ("unique_key", "text"),
    ("schedule_key", "text"),
    ("limit_key", "text"),
    ("tenant", "text"),
)
_CHUNK = {"sqlite": 5_000, "postgresql": 5_000}


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job to enqueue; every option left ``None`` takes the task's default.

    ``delay`` (seconds or timedelta) and ``run_at`` (an aware datetime) postpone the job;
    ``unique_key`` replaces the task's unique key; ``tenant`` tags it for per-tenant listing.
    """

    task: Task
    args: Mapping[str, Any] | None = None
    queue: str | None = None
    priority: int | None = None
    delay: float | dt.timedelta | None = None
    run_at: dt.datetime | None = None
    unique_key: str | None = None
    max_attempts: int | None = None
    tenant: str | None = None
    schedule_key: str | None = None


@dataclass(frozen=True, slots=True)
class _Row:
    values: tuple[Any, ...]
    unique_key: str | None
    schedule_key: str | None


def _prepare(job: NewJob, backend: JobBackend) -> _Row:
    task = job.task
    args = dict(job.args or {})
    encoded = task.encode_args(args)
    queue = job.queue or task.queue
    if task.key_limits is not None and queue != task.queue:
        raise ConfigurationError(
            f"task {task.name!r} has key limits, enforced in its own queue {task.queue!r}; "
            f"it cannot be enqueued into {queue!r}"
        )
    delay = seconds(job.delay) or 0.0
    if job.run_at is not None and job.delay is not None:
        raise JobArgumentsError("pass either delay or run_at, not both")
    if job.run_at is not None and job.run_at.tzinfo is None:
        raise JobArgumentsError("run_at must be an aware datetime (e.g. in UTC)")
    max_attempts = job.max_attempts if job.max_attempts is not None else task.max_attempts
    if max_attempts < 1:
        raise JobArgumentsError("max_attempts must be >= 1")
    unique_key = job.unique_key if job.unique_key is not None else task.unique_key_for(args)
    tenant = job.tenant if job.tenant is not None else task.tenant_for(args)
    values = (
        task.name,
        queue,
        job.priority if job.priority is not None else task.priority,
        encoded,
        backend.bind_time(job.run_at) if job.run_at is not None else None,
        float(delay),
        max_attempts,
        unique_key,
        job.schedule_key,
        task.limit_key_for(args),
        tenant,
    )
    return _Row(values, unique_key, job.schedule_key)


def _insert_sql(backend: JobBackend, cte: str) -> str:
    due = f"COALESCE(r.run_at, {backend.later('r.delay')})"
    return f"""
        WITH {cte}
        INSERT INTO lockstep_jobs (task, queue, state, priority, args, run_at, created_at,
                                   max_attempts, unique_key, schedule_key, limit_key, tenant)
        SELECT r.task, r.queue,
               CASE WHEN {due} <= {backend.now} THEN 'queued' ELSE 'scheduled' END,
               r.priority, r.args, {due}, {backend.now}, r.max_attempts, r.unique_key,
               r.schedule_key, r.limit_key, r.tenant
        FROM r WHERE TRUE
        ON CONFLICT DO NOTHING
        RETURNING id, unique_key, schedule_key, state, queue
    """


async def insert_jobs(
    connection: AsyncConnection, jobs: Sequence[NewJob]
) -> tuple[list[int | None], set[str]]:
    """Insert ``jobs`` on ``connection`` (inside its transaction).

    Returns the id of each input in order (None: skipped, its unique key or schedule tick is
    taken) and the queues that got jobs ready to run now. Validates every job first.
    """
    backend = backend_for(connection.dialect.name)
    rows = [_prepare(job, backend) for job in jobs]
    ids: list[int | None] = []
    ready: set[str] = set()
    size = _CHUNK[backend.name]
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        cte, params = backend.rows("r", _COLUMNS, [row.values for row in chunk])
        result = await connection.execute(text(_insert_sql(backend, cte)), params)
        by_key: dict[tuple[str, str], int] = {}
        keyless: list[int] = []
        for row in result:
            if row.state == "queued":
                ready.add(row.queue)
            if row.unique_key is not None:
                by_key[("u", row.unique_key)] = row.id
            elif row.schedule_key is not None:
                by_key[("s", row.schedule_key)] = row.id
            else:
                keyless.append(row.id)
        # Keyless rows always insert, and ids are drawn in input order: sorted ids match.
        keyless.sort()
        position = 0
        for item in chunk:
            key = (
                ("u", item.unique_key)
                if item.unique_key is not None
                else ("s", item.schedule_key)
                if item.schedule_key is not None
                else None
            )
            if key is None:
                ids.append(keyless[position])
                position += 1
            else:
                # The first input with a key gets the row; later duplicates were skipped.
                ids.append(by_key.pop(key, None))
    return ids, ready


async def enqueue_many(
    session: AsyncSession | AsyncConnection, jobs: Sequence[NewJob]
) -> list[int | None]:
    """Enqueue ``jobs`` in the transaction of ``session``; the id of each, or None where its
    unique key is taken by a live job. All are validated before any is written."""
    connection = await session.connection() if isinstance(session, AsyncSession) else session
    ids, ready = await insert_jobs(connection, jobs)
    if ready:
        backend = backend_for(connection.dialect.name)
        await backend.notify(connection, [f"q:{queue}" for queue in sorted(ready)])
        if isinstance(session, AsyncSession):
            session.info.setdefault(ENQUEUED, set()).update(ready)
    return ids


async def enqueue(
    session: AsyncSession | AsyncConnection,
    task: Task,
    args: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    delay: float | dt.timedelta | None = None,
    run_at: dt.datetime | None = None,
    unique_key: str | None = None,
    max_attempts: int | None = None,
    tenant: str | None = None,
) -> int | None:
    """Enqueue one job of ``task`` in the transaction of ``session``.

    Returns the job id, or None when a live job already holds its unique key. Raises
    :class:`JobArgumentsError` for args that are not JSON values or do not fit the handler.
    """
    if not isinstance(task, Task):
        raise TypeError(
            "enqueue() takes a registered Task; to enqueue by name use Jobs.enqueue "
            "(it checks the name against the registry)"
        )
    job = NewJob(
        task=task,
        args=args,
        queue=queue,
        priority=priority,
        delay=delay,
        run_at=run_at,
        unique_key=unique_key,
        max_attempts=max_attempts,
        tenant=tenant,
    )
    return (await enqueue_many(session, [job]))[0]
