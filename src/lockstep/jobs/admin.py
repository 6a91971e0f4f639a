"""Looking at jobs and steering them: get, list, cancel, retry, discard, pause, stats.

Every change is one conditional UPDATE, so it races safely with workers: cancelling a job
that a worker claims at the same moment either cancels it before it runs or asks the
running attempt to abort; retrying only touches jobs in a final state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from lockstep.db import Database
from lockstep.jobs.backends import JobBackend, backend_for
from lockstep.jobs.errors import JobNotFoundError, JobStateError
from lockstep.jobs.job import JobInfo, as_dict, loads
from lockstep.jobs.metrics import QueueStats
from lockstep.jobs.schema import JobState

_FINAL = "('succeeded', 'failed', 'cancelled', 'aborted')"


class JobAdmin:
    """Admin operations on the jobs of one :class:`Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.backend: JobBackend = backend_for(database.backend)

    def info(self, row: Row[Any], *, has_result: bool) -> JobInfo:
        read = self.backend.read_time
        run_at, created_at = read(row.run_at), read(row.created_at)
        assert run_at is not None
        assert created_at is not None
        errors = loads(row.errors)
        progress = loads(row.progress)
        return JobInfo(
            id=int(row.id),
            task=row.task,
            queue=row.queue,
            state=JobState(row.state),
            priority=int(row.priority),
            args=as_dict(row.args),
            attempt=int(row.attempt),
            max_attempts=int(row.max_attempts),
            run_at=run_at,
            created_at=created_at,
            started_at=read(row.started_at),
            finished_at=read(row.finished_at),
            worker_id=row.worker_id,
            unique_key=row.unique_key,
            schedule_key=row.schedule_key,
            tenant=row.tenant,
            reason=row.reason,
            error=row.error,
            traceback=row.traceback,
            errors=list(errors) if isinstance(errors, list) else [],
            progress=dict(progress) if isinstance(progress, dict) else None,
            has_result=has_result,
            result_expires_at=read(row.result_expires_at),
            abort_requested=bool(row.abort_requested),
            reclaims=int(row.reclaims),
            snoozes=int(row.snoozes),
        )

    def _select(self) -> str:
        live = f"(result_expires_at IS NOT NULL AND result_expires_at > {self.backend.now})"
        return (
            "SELECT id, task, queue, state, priority, args, attempt, max_attempts, run_at, "
            "created_at, started_at, finished_at, worker_id, unique_key, schedule_key, tenant, "
            "reason, error, traceback, errors, progress, result_expires_at, abort_requested, "
            f"reclaims, snoozes, CASE WHEN {live} THEN 1 ELSE 0 END AS result_live, "
            "CASE WHEN state = 'succeeded' AND result_expires_at IS NULL "
            f"AND lease_expires_at > {self.backend.now} THEN 1 ELSE 0 END AS result_pending "
            "FROM lockstep_jobs"
        )

    async def get(self, job_id: int, *, tenant: str | None = None) -> JobInfo:
        """The job ``job_id`` (of ``tenant``, if given); raises :class:`JobNotFoundError`."""
        sql = self._select() + " WHERE id = :id"
        params: dict[str, Any] = {"id": job_id}
        if tenant is not None:
            sql += " AND tenant = :tenant"
            params["tenant"] = tenant
        async with self.database.reader_engine.connect() as conn:
            row = (await conn.execute(text(sql), params)).first()
        if row is None:
            raise JobNotFoundError(f"job {job_id} not found")
        return self.info(row, has_result=bool(row.result_live))

    async def list_jobs(
        self,
        *,
        states: Iterable[JobState | str] | None = None,
        queue: str | None = None,
        task: str | None = None,
        tenant: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[JobInfo]:
        """Jobs newest first, filtered; page with ``before_id`` = the last id seen."""
        clauses: list[str] = []
        params: dict[str, Any] = {"limit": max(1, min(limit, 1000))}
        binds: list[Any] = []
        if states is not None:
            params["states"] = [JobState(s).value for s in states]
            clauses.append("state IN :states")
            binds.append(bindparam("states", expanding=True))
        for name, value in (("queue", queue), ("task", task), ("tenant", tenant)):
            if value is not None:
                clauses.append(f"{name} = :{name}")
                params[name] = value
        if before_id is not None:
            clauses.append("id < :before_id")
            params["before_id"] = before_id
        sql = self._select()
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id DESC LIMIT :limit"
        statement = text(sql).bindparams(*binds) if binds else text(sql)
        async with self.database.reader_engine.connect() as conn:
            rows = (await conn.execute(statement, params)).all()
        return [self.info(row, has_result=bool(row.result_live)) for row in rows]

    async def cancel(self, job_id: int, *, tenant: str | None = None) -> JobInfo:
        """Cancel a job: a scheduled or queued job becomes ``cancelled`` and never runs; a
        running one is asked to abort (it ends ``aborted`` within one poll interval of its
        worker). Raises :class:`JobStateError` for a finished job."""
        await self.get(job_id, tenant=tenant)
        b = self.backend
        async with b.write(self.database) as conn:
            cancelled = await conn.scalar(
                text(
                    f"UPDATE lockstep_jobs SET state = 'cancelled', reason = 'cancelled', "
                    f"finished_at = {b.now} "
                    "WHERE id = :id AND state IN ('scheduled', 'queued') RETURNING id"
                ),
                {"id": job_id},
            )
            aborting = None
            if cancelled is None:
                aborting = await conn.scalar(
                    text(
                        "UPDATE lockstep_jobs SET abort_requested = TRUE "
                        "WHERE id = :id AND state = 'running' RETURNING id"
                    ),
                    {"id": job_id},
                )
                if aborting is not None:
                    await b.notify(conn, [f"a:{job_id}"])
        job = await self.get(job_id)
        if cancelled is None and aborting is None:
            raise JobStateError(
                f"job {job_id} already finished ({job.state.value}); nothing to cancel",
                details={"state": job.state.value},
            )
        return job

    async def retry(self, job_id: int, *, tenant: str | None = None) -> JobInfo:
        """Run a failed, cancelled or aborted job again now (one more attempt allowed), or
        a scheduled one now. Raises :class:`JobStateError` for a queued, running or
        succeeded job, or when another live job holds its unique key."""
        await self.get(job_id, tenant=tenant)
        b = self.backend
        try:
            async with b.write(self.database) as conn:
                changed = await conn.scalar(
                    text(
                        f"UPDATE lockstep_jobs SET state = 'queued', run_at = {b.now}, "
                        f"max_attempts = {b.greatest('max_attempts', 'attempt + 1')}, "
                        "finished_at = NULL, reason = NULL, abort_requested = FALSE, "
                        "result = NULL, result_expires_at = NULL, lease_expires_at = NULL "
                        "WHERE id = :id AND state IN ('failed', 'cancelled', 'aborted', "
                        "'scheduled') RETURNING queue"
                    ),
                    {"id": job_id},
                )
                if changed is not None:
                    await b.notify(conn, [f"q:{changed}"])
        except IntegrityError:
            raise JobStateError(
                f"job {job_id} cannot run again: another live job holds its unique key"
            ) from None
        job = await self.get(job_id)
        if changed is None:
            raise JobStateError(
                f"job {job_id} is {job.state.value}; only failed, cancelled, aborted or "
                "scheduled jobs can be retried",
                details={"state": job.state.value},
            )
        return job

    async def discard(self, job_id: int, *, tenant: str | None = None) -> None:
        """Delete a finished job (a dead job no one will retry). Raises
        :class:`JobStateError` for a live job: cancel it first."""
        job = await self.get(job_id, tenant=tenant)
        async with self.backend.write(self.database) as conn:
            deleted = await conn.scalar(
                text(
                    f"DELETE FROM lockstep_jobs WHERE id = :id AND state IN {_FINAL} RETURNING id"
                ),
                {"id": job_id},
            )
        if deleted is None:
            raise JobStateError(
                f"job {job_id} is {job.state.value}; cancel it before discarding it",
                details={"state": job.state.value},
            )

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause (no new claims from any worker; running jobs finish) or resume a queue."""
        b = self.backend
        async with b.write(self.database) as conn:
            await conn.execute(
                text(
                    "INSERT INTO lockstep_job_queues (name, paused, updated_at) "
                    f"VALUES (:name, :paused, {b.now}) ON CONFLICT (name) DO UPDATE "
                    "SET paused = excluded.paused, updated_at = excluded.updated_at"
                ),
                {"name": queue, "paused": paused},
            )
            if not paused:
                await b.notify(conn, [f"q:{queue}"])

    async def paused(self) -> set[str]:
        async with self.database.reader_engine.connect() as conn:
            rows = await conn.execute(text("SELECT name FROM lockstep_job_queues WHERE paused"))
            return {row.name for row in rows}

    async def stats(self, queues: Iterable[str] = ()) -> list[QueueStats]:
        """Live jobs per queue (every queue with live jobs, plus ``queues``), sorted."""
        b = self.backend
        sql = (
            "SELECT queue, state, count(*) AS n, "
            f"max(CASE WHEN state = 'queued' THEN {b.age('run_at')} END) AS oldest "
            "FROM lockstep_jobs WHERE state IN ('scheduled', 'queued', 'running') "
            "GROUP BY queue, state"
        )
        counts: dict[str, dict[str, float]] = {q: {} for q in queues}
        async with self.database.reader_engine.connect() as conn:
            for row in await conn.execute(text(sql)):
                entry = counts.setdefault(row.queue, {})
                entry[row.state] = float(row.n)
                if row.oldest is not None:
                    entry["oldest"] = max(float(row.oldest), 0.0)
        paused = await self.paused()
        return [
            QueueStats(
                queue=name,
                scheduled=int(entry.get("scheduled", 0)),
                queued=int(entry.get("queued", 0)),
                running=int(entry.get("running", 0)),
                oldest_queued_seconds=entry.get("oldest", 0.0),
                paused=name in paused,
            )
            for name, entry in sorted(counts.items())
        ]

    async def result_state(self, job_id: int) -> tuple[JobInfo, str | None, bool]:
        """The job, its stored result JSON (None when not kept or expired), and whether the
        result is still being stored (the job completed in its handler's transaction)."""
        sql = self._select().replace(" FROM lockstep_jobs", ", result FROM lockstep_jobs")
        async with self.database.reader_engine.connect() as conn:
            row = (await conn.execute(text(sql + " WHERE id = :id"), {"id": job_id})).first()
        if row is None:
            raise JobNotFoundError(f"job {job_id} not found (never enqueued, or pruned)")
        live = bool(row.result_live)
        pending = bool(row.result_pending)
        return self.info(row, has_result=live), (row.result if live else None), pending
