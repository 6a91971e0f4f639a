"""The worker's side of the jobs table: claim, heartbeat, finish, rescue, stage, prune.

Every state change of a running job is fenced by ``(worker_id, attempt)`` and
``state = 'running'``: a worker whose lease expired (its job was handed to a new attempt)
changes nothing, whatever it later tries to write. Every time comes from the database clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from lockstep.db import Database
from lockstep.jobs.backends import JobBackend, JobRows, backend_for
from lockstep.jobs.completion import finish_sql
from lockstep.jobs.job import ClaimedJob, as_dict
from lockstep.jobs.limits import KeyLimits, QueueLimits
from lockstep.jobs.outcome import Outcome
from lockstep.jobs.quota import claim_within_limits

_RETURNING = (
    "id, task, queue, args, attempt, max_attempts, priority, run_at, created_at, "
    "started_at, limit_key"
)
_FENCE = (
    "{match} AND lockstep_jobs.attempt = {attempt} "
    "AND lockstep_jobs.worker_id = :worker AND {state_column} = {state}"
)


@dataclass(frozen=True, slots=True)
class Rescued:
    """A running job whose lease expired, and what the rescuer made of it."""

    id: int
    queue: str
    task: str
    state: str
    worker_id: str | None


class JobStore:
    """SQL for workers over one :class:`Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.backend: JobBackend = backend_for(database.backend)
        b = self.backend
        # The picking SELECT is a MATERIALIZED CTE: evaluated exactly once, so LIMIT and
        # SKIP LOCKED mean what they say (as an IN-subquery PostgreSQL may re-run it).
        self._claim = text(f"""
            WITH picked AS MATERIALIZED (
                SELECT id FROM lockstep_jobs
                WHERE state = 'queued' AND queue = :queue AND NOT EXISTS (
                    SELECT 1 FROM lockstep_job_queues q WHERE q.name = :queue AND q.paused)
                ORDER BY priority, run_at, id
                LIMIT :limit{b.skip_locked})
            UPDATE lockstep_jobs
            SET state = 'running', attempt = attempt + 1, worker_id = :worker,
                started_at = {b.now}, lease_expires_at = {b.later(":lease")}
            WHERE {b.among("id", "SELECT id FROM picked")}
            RETURNING {_RETURNING}
        """)
        self._claim_ids = text(f"""
            UPDATE lockstep_jobs
            SET state = 'running', attempt = attempt + 1, worker_id = :worker,
                started_at = {b.now}, lease_expires_at = {b.later(":lease")}
            WHERE state = 'queued' AND id IN :ids
            RETURNING {_RETURNING}
        """).bindparams(bindparam("ids", expanding=True))
        self._stage = text(f"""
            WITH picked AS MATERIALIZED (
                SELECT id FROM lockstep_jobs WHERE state = 'scheduled' AND run_at <= {b.now}
                ORDER BY run_at LIMIT :limit{b.skip_locked})
            UPDATE lockstep_jobs SET state = 'queued'
            WHERE state = 'scheduled' AND {b.among("id", "SELECT id FROM picked")}
            RETURNING queue
        """)
        lost = "abort_requested OR attempt >= max_attempts"
        self._rescue = text(f"""
            WITH picked AS MATERIALIZED (
                SELECT id FROM lockstep_jobs
                WHERE state = 'running' AND lease_expires_at < {b.now}
                ORDER BY lease_expires_at LIMIT :limit{b.skip_locked})
            UPDATE lockstep_jobs SET
                state = CASE WHEN abort_requested THEN 'aborted'
                             WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
                reason = CASE WHEN abort_requested THEN 'aborted'
                              WHEN attempt >= max_attempts THEN 'lost' ELSE 'lost' END,
                finished_at = CASE WHEN {lost} THEN {b.now} ELSE NULL END,
                error = :error,
                errors = {b.append_error("errors", "attempt", "CAST(:error AS text)")},
                lease_expires_at = NULL,
                reclaims = reclaims + 1
            WHERE state = 'running' AND lease_expires_at < {b.now}
              AND {b.among("id", "SELECT id FROM picked")}
            RETURNING id, queue, task, state, worker_id
        """)
        self._aborts = text(
            "SELECT id FROM lockstep_jobs WHERE id IN :ids AND abort_requested"
        ).bindparams(bindparam("ids", expanding=True))
        self._prune = text(f"""
            WITH picked AS MATERIALIZED (
                SELECT id FROM lockstep_jobs
                WHERE state IN ('succeeded', 'failed', 'cancelled', 'aborted')
                  AND finished_at < {b.later("-1.0 * CAST(:retention AS float)")}
                  AND (result_expires_at IS NULL OR result_expires_at < {b.now})
                LIMIT :limit{b.skip_locked})
            DELETE FROM lockstep_jobs WHERE {b.among("id", "SELECT id FROM picked")}
        """)
        self._now = text(f"SELECT {b.now} AS now")

    def _fenced_update(self, values: JobRows, sets: str, state: str, returning: str) -> Any:
        """``UPDATE lockstep_jobs SET sets`` for the jobs ``values`` names, where this
        worker's attempt still holds them in ``state``."""
        # Found by primary key: the partial index over running jobs looks selective to the
        # planner, but until a vacuum it still holds every job that ever ran.
        state_column = self.backend.unindexed("lockstep_jobs.state")
        fence = _FENCE.format(
            match=values.match,
            attempt=values.ref("attempt"),
            state_column=state_column,
            state=state,
        )
        return text(f"""
            {values.prefix}
            UPDATE lockstep_jobs SET {sets}
            {values.source} WHERE {fence}
            RETURNING {returning}
        """)

    # -- claiming ------------------------------------------------------------------------

    async def claim(
        self,
        queue: str,
        limit: int,
        worker_id: str,
        lease: float,
        *,
        queue_limits: QueueLimits | None = None,
        key_limits: dict[str, KeyLimits] | None = None,
    ) -> list[ClaimedJob]:
        """Lease up to ``limit`` queued jobs of ``queue`` in dequeue order (priority, run_at,
        id) for ``lease`` seconds. With limits, claims are serialized across workers and
        take no more than the queue's and the keys' limits allow. A paused queue yields
        nothing."""
        if limit <= 0:
            return []
        params = {"queue": queue, "limit": limit, "worker": worker_id, "lease": float(lease)}
        if queue_limits is None and not key_limits:
            async with self.backend.autocommit(self.database) as conn:
                rows = (await conn.execute(self._claim, params)).all()
        else:
            async with self.backend.write(self.database) as conn:
                rows = await claim_within_limits(
                    conn,
                    self.backend,
                    self._claim_ids,
                    params,
                    queue_limits or QueueLimits(),
                    key_limits or {},
                )
        jobs = [self._claimed(row) for row in rows]
        jobs.sort(key=lambda job: (job.priority, job.run_at, job.id))
        return jobs

    def _claimed(self, row: Row[Any]) -> ClaimedJob:
        # By position (the order of _RETURNING): a claim builds one per job it hands out.
        (
            job_id,
            task,
            queue,
            args,
            attempt,
            max_attempts,
            priority,
            run_at,
            created,
            started,
            key,
        ) = tuple(row)
        read = self.backend.read_time
        run_at, created_at, started_at = read(run_at), read(created), read(started)
        assert run_at is not None
        assert created_at is not None
        assert started_at is not None
        return ClaimedJob(
            int(job_id),
            task,
            queue,
            as_dict(args),
            int(attempt),
            int(max_attempts),
            int(priority),
            run_at,
            created_at,
            started_at,
            key,
        )

    # -- while running -------------------------------------------------------------------

    async def heartbeat(
        self, worker_id: str, fences: Sequence[tuple[int, int]], lease: float
    ) -> dict[int, bool]:
        """Extend the leases of the attempts in ``fences`` (``(id, attempt)``) this worker
        still owns; returns owned id → whether an abort was requested. A missing id means
        the lease was lost: stop that attempt and record nothing."""
        if not fences:
            return {}
        b = self.backend
        values = b.by_job((("id", "bigint"), ("attempt", "int")), fences)
        statement = self._fenced_update(
            values,
            f"lease_expires_at = {b.later(':lease')}",
            "'running'",
            "lockstep_jobs.id, lockstep_jobs.abort_requested",
        )
        params = {**values.params, "worker": worker_id, "lease": lease}
        async with b.autocommit(self.database) as conn:
            result = await conn.execute(statement, params)
            return {int(row.id): bool(row.abort_requested) for row in result}

    async def aborts(self, ids: Sequence[int]) -> set[int]:
        """Which of the jobs ``ids`` have an abort requested (a read; no lock taken)."""
        if not ids:
            return set()
        async with self.database.reader_engine.connect() as conn:
            return {int(row.id) for row in await conn.execute(self._aborts, {"ids": list(ids)})}

    async def save_progress(
        self, worker_id: str, items: Sequence[tuple[int, int, str]]
    ) -> set[int]:
        """Store progress JSON for attempts still owned; returns the ids stored."""
        if not items:
            return set()
        b = self.backend
        values = b.by_job((("id", "bigint"), ("attempt", "int"), ("progress", "text")), items)
        statement = self._fenced_update(
            values, f"progress = {values.ref('progress')}", "'running'", "lockstep_jobs.id"
        )
        async with b.autocommit(self.database) as conn:
            result = await conn.execute(statement, {**values.params, "worker": worker_id})
            return {int(row.id) for row in result}

    # -- finishing -----------------------------------------------------------------------

    async def finish(self, worker_id: str, items: Sequence[tuple[int, int, Outcome]]) -> set[int]:
        """Record how attempts ended (one statement per kind of outcome); returns the ids
        accepted. An attempt whose fence no longer holds is not changed (and not in the
        result)."""
        by_kind: dict[str, list[tuple[int, int, Outcome]]] = {}
        for item in items:
            by_kind.setdefault(item[2].kind, []).append(item)
        accepted: set[int] = set()
        # Each kind's statement is atomic and fenced on its own: no transaction needed.
        async with self.backend.autocommit(self.database) as conn:
            for kind, group in by_kind.items():
                accepted |= await self._finish_kind(conn, worker_id, kind, group)
        return accepted

    async def finish_in(
        self,
        conn: AsyncConnection,
        worker_id: str,
        job_id: int,
        attempt: int,
        *,
        result_pending: bool,
    ) -> bool:
        """Mark the attempt succeeded inside ``conn``'s transaction (the handler's own), if
        its fence holds. False means the lease is lost: the caller must roll back.

        With ``result_pending`` the lease stays on the row until the result is stored, so
        a result waiter knows to wait for it (and stops waiting if the worker dies first).
        """
        kind = "effects" if result_pending else "succeeded"
        accepted = await self._finish_kind(
            conn, worker_id, kind, [(job_id, attempt, Outcome("succeeded"))]
        )
        return job_id in accepted

    async def _finish_kind(
        self,
        conn: AsyncConnection,
        worker_id: str,
        kind: str,
        group: Sequence[tuple[int, int, Outcome]],
    ) -> set[int]:
        sets, state, values = finish_sql(self.backend, kind, group)
        statement = self._fenced_update(values, sets, state, "lockstep_jobs.id")
        result = await conn.execute(statement, {**values.params, "worker": worker_id})
        return {int(row.id) for row in result}

    # -- maintenance ---------------------------------------------------------------------

    async def rescue(self, limit: int = 500) -> list[Rescued]:
        """Hand back running jobs whose lease expired (their worker is presumed dead): the
        attempt counts; past ``max_attempts`` the job fails with reason ``lost``; a job with
        an abort requested ends ``aborted``."""
        error = "lease expired: the worker stopped renewing it (presumed dead)"
        async with self.backend.write(self.database) as conn:
            result = await conn.execute(self._rescue, {"limit": limit, "error": error})
            rescued = [Rescued(int(r.id), r.queue, r.task, r.state, r.worker_id) for r in result]
            ready = sorted({r.queue for r in rescued if r.state == "queued"})
            await self.backend.notify(conn, [f"q:{q}" for q in ready])
        return rescued

    async def stage(self, limit: int = 1000) -> set[str]:
        """Make scheduled jobs whose time has come ready; returns their queues."""
        async with self.backend.write(self.database) as conn:
            queues = {row.queue for row in await conn.execute(self._stage, {"limit": limit})}
            await self.backend.notify(conn, [f"q:{q}" for q in sorted(queues)])
        return queues

    async def due_work(self) -> tuple[bool, bool]:
        """(scheduled jobs are due, running leases have expired): a cheap read that spares
        a write transaction when there is nothing to stage or rescue."""
        b = self.backend
        statement = text(f"""
            SELECT
              EXISTS (SELECT 1 FROM lockstep_jobs
                      WHERE state = 'scheduled' AND run_at <= {b.now}) AS due,
              EXISTS (SELECT 1 FROM lockstep_jobs
                      WHERE state = 'running' AND lease_expires_at < {b.now}) AS expired
        """)
        async with self.database.reader_engine.connect() as conn:
            row = (await conn.execute(statement)).one()
            return bool(row.due), bool(row.expired)

    async def prune(self, retention: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` jobs that finished more than ``retention`` seconds ago and
        whose result (if kept) has expired; returns how many."""
        async with self.backend.write(self.database) as conn:
            result = await conn.execute(
                self._prune, {"retention": float(retention), "limit": limit}
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def now(self) -> dt.datetime:
        """The database clock, as an aware UTC datetime."""
        async with self.database.reader_engine.connect() as conn:
            value = self.backend.read_time(await conn.scalar(self._now))
        assert value is not None
        return value
