"""Writes the ticks of a registry's schedules into the jobs table.

Any number of workers run this at once, with no leader: each computes the same ticks and
inserts them; the unique ``schedule_key`` (schedule, tick) keeps exactly one job per tick,
and ``lockstep_job_schedules.last_tick`` only moves forward. A schedule that is no longer
declared is removed with its pending (scheduled or queued) job.
"""

from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy import text

from lockstep.db import Database
from lockstep.jobs.backends import backend_for
from lockstep.jobs.enqueue import NewJob, insert_jobs
from lockstep.jobs.task import TaskRegistry

log = structlog.get_logger("lockstep.jobs")


def _like_prefix(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}@%"


class Scheduler:
    """Enqueues due schedule ticks of ``registry`` into ``database``."""

    def __init__(self, database: Database, registry: TaskRegistry) -> None:
        self.database = database
        self.registry = registry
        self.backend = backend_for(database.backend)

    async def _state(self) -> tuple[dt.datetime, dict[str, dt.datetime]]:
        b = self.backend
        async with self.database.reader_engine.connect() as conn:
            now = b.read_time(await conn.scalar(text(f"SELECT {b.now}")))
            rows = await conn.execute(text("SELECT name, last_tick FROM lockstep_job_schedules"))
            last: dict[str, dt.datetime] = {}
            for row in rows:
                tick = b.read_time(row.last_tick)
                if tick is not None:
                    last[row.name] = tick
        assert now is not None
        return now, last

    async def run_once(self) -> int:
        """Enqueue every due tick and drop undeclared schedules; returns jobs inserted.

        Reads first and writes only when a tick is due, so running it every poll interval
        costs one small read most of the time.
        """
        now, last = await self._state()
        declared = {schedule.name: schedule for schedule in self.registry.schedules}
        due = [
            (schedule, ticks)
            for schedule in declared.values()
            if (ticks := schedule.due_ticks(last.get(schedule.name), now))
        ]
        removed = sorted(set(last) - set(declared))
        if not due and not removed:
            return 0
        b = self.backend
        inserted = 0
        async with b.write(self.database) as conn:
            ready: set[str] = set()
            for schedule, ticks in due:
                task = self.registry.get(schedule.task)
                jobs = [
                    NewJob(
                        task=task, args=schedule.args, run_at=tick, schedule_key=schedule.key(tick)
                    )
                    for tick in ticks
                ]
                ids, queues = await insert_jobs(conn, jobs)
                inserted += sum(1 for job_id in ids if job_id is not None)
                ready |= queues
                await conn.execute(
                    text(
                        "INSERT INTO lockstep_job_schedules (name, last_tick) "
                        "VALUES (:name, :tick) ON CONFLICT (name) DO UPDATE "
                        "SET last_tick = excluded.last_tick "
                        "WHERE lockstep_job_schedules.last_tick < excluded.last_tick"
                    ),
                    {"name": schedule.name, "tick": b.bind_time(ticks[-1])},
                )
            for name in removed:
                deleted = await conn.execute(
                    text(
                        "DELETE FROM lockstep_jobs WHERE schedule_key LIKE :prefix ESCAPE '\\' "
                        "AND state IN ('scheduled', 'queued')"
                    ),
                    {"prefix": _like_prefix(name)},
                )
                await conn.execute(
                    text("DELETE FROM lockstep_job_schedules WHERE name = :name"), {"name": name}
                )
                log.info("jobs_schedule_removed", schedule=name, pending_deleted=deleted.rowcount)
            await b.notify(conn, [f"q:{queue}" for queue in sorted(ready)])
        return inserted
