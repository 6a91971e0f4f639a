"""The tables of the jobs system: the live definition of the latest revision of
``JOBS_TABLES`` (whose frozen DDL an application's migration applies; see :mod:`.revisions`).

One table holds every job, whatever its state::

    lockstep_jobs            one row per job: task, queue, priority, args, state, attempt,
                             lease, result, progress, errors
    lockstep_job_queues      paused queues
    lockstep_job_buckets     token buckets of rate-limited queues and keys
    lockstep_job_schedules   the last tick each cron schedule enqueued

The indexes are the contract the queries rely on: dequeue walks
``(queue, priority, run_at, id)`` over queued rows only, so it stays an index range scan
however many jobs wait; unique keys are enforced by a partial unique index over the live
states; a schedule tick is unique across every state.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)


class JobState(enum.StrEnum):
    """Where a job is in its life.

    ``scheduled`` waits for its ``run_at`` (a delay, a retry backoff, a snooze, a cron tick);
    ``queued`` is ready for a worker; ``running`` is leased by one worker attempt. The four
    final states stay distinct: ``succeeded``, ``failed`` (attempts exhausted, or lost),
    ``cancelled`` (stopped before it ran) and ``aborted`` (stopped while it ran).
    """

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTED = "aborted"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


LIVE_STATES = frozenset({JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING})
FINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.ABORTED}
)

metadata = MetaData()

_id_type = BigInteger().with_variant(Integer(), "sqlite")
_time = DateTime(timezone=True)
_live = "state IN ('scheduled', 'queued', 'running')"
_final = "state IN ('succeeded', 'failed', 'cancelled', 'aborted')"


def _where(sql: str) -> dict[str, Any]:
    clause = text(sql)
    return {"sqlite_where": clause, "postgresql_where": clause}


jobs_table = Table(
    "lockstep_jobs",
    metadata,
    Column("id", _id_type, primary_key=True, autoincrement=True),
    Column("task", String(200), nullable=False),
    Column("queue", String(100), nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("args", Text, nullable=False),
    Column("run_at", _time, nullable=False),
    Column("created_at", _time, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False),
    Column("unique_key", String(300)),
    Column("schedule_key", String(300)),
    Column("limit_key", String(300)),
    Column("tenant", String(100)),
    Column("worker_id", String(200)),
    Column("started_at", _time),
    Column("finished_at", _time),
    Column("lease_expires_at", _time),
    Column("abort_requested", Boolean, nullable=False, server_default=false()),
    Column("reason", String(40)),
    Column("error", Text),
    Column("traceback", Text),
    Column("errors", Text),  # JSON list of {"attempt", "at", "error"}
    Column("result", Text),  # JSON; kept while result_expires_at is in the future
    Column("result_expires_at", _time),
    Column("progress", Text),  # JSON {"current", "total", "message"}
    Column("reclaims", Integer, nullable=False, server_default="0"),
    Column("snoozes", Integer, nullable=False, server_default="0"),
    Index(
        "ix_lockstep_jobs_dequeue",
        "queue",
        "priority",
        "run_at",
        "id",
        **_where("state = 'queued'"),
    ),
    Index("ix_lockstep_jobs_scheduled", "run_at", **_where("state = 'scheduled'")),
    Index("ix_lockstep_jobs_leases", "lease_expires_at", **_where("state = 'running'")),
    Index(
        "ix_lockstep_jobs_limit_running",
        "limit_key",
        **_where("state = 'running' AND limit_key IS NOT NULL"),
    ),
    Index("ix_lockstep_jobs_finished", "finished_at", **_where(_final)),
    Index(
        "uq_lockstep_jobs_unique_key",
        "unique_key",
        unique=True,
        **_where(f"unique_key IS NOT NULL AND {_live}"),
    ),
    Index(
        "uq_lockstep_jobs_schedule_key",
        "schedule_key",
        unique=True,
        **_where("schedule_key IS NOT NULL"),
    ),
    sqlite_autoincrement=True,  # never reuse an id: a result is fetched by job id
)

queues_table = Table(
    "lockstep_job_queues",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("updated_at", _time),
)

buckets_table = Table(
    "lockstep_job_buckets",
    metadata,
    Column("name", String(400), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", _time, nullable=False),
)

schedules_table = Table(
    "lockstep_job_schedules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("last_tick", _time, nullable=False),
)
