"""The jobs tables, revision by revision. Released revisions never change.

Revision 1 (lockstep 0.1): ``lockstep_jobs`` with the indexes the queries rely on (dequeue,
scheduled, leases, limits, finished, the unique and schedule keys),
``lockstep_job_queues``, ``lockstep_job_buckets`` and ``lockstep_job_schedules``. To change
them, append a revision (see ``lockstep.changes.revisions``) and update the live definition
in :mod:`.schema` to match.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy.engine import Connection

from lockstep.jobs.schema import metadata
from lockstep.schema import Revision, VersionedTables

_LIVE = "state IN ('scheduled', 'queued', 'running')"
_FINAL = "state IN ('succeeded', 'failed', 'cancelled', 'aborted')"


def _partial(sql: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(sql), "postgresql_where": sa.text(sql)}


def _create_1(ops: Operations) -> None:
    time = sa.DateTime(timezone=True)
    ops.create_table(
        "lockstep_jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("run_at", time, nullable=False),
        sa.Column("created_at", time, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("unique_key", sa.String(300)),
        sa.Column("schedule_key", sa.String(300)),
        sa.Column("limit_key", sa.String(300)),
        sa.Column("tenant", sa.String(100)),
        sa.Column("worker_id", sa.String(200)),
        sa.Column("started_at", time),
        sa.Column("finished_at", time),
        sa.Column("lease_expires_at", time),
        sa.Column("abort_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("reason", sa.String(40)),
        sa.Column("error", sa.Text()),
        sa.Column("traceback", sa.Text()),
        sa.Column("errors", sa.Text()),
        sa.Column("result", sa.Text()),
        sa.Column("result_expires_at", time),
        sa.Column("progress", sa.Text()),
        sa.Column("reclaims", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("snoozes", sa.Integer(), nullable=False, server_default="0"),
        sqlite_autoincrement=True,
    )
    jobs = "lockstep_jobs"
    ops.create_index(
        "ix_lockstep_jobs_dequeue",
        jobs,
        ["queue", "priority", "run_at", "id"],
        **_partial("state = 'queued'"),
    )
    ops.create_index(
        "ix_lockstep_jobs_scheduled", jobs, ["run_at"], **_partial("state = 'scheduled'")
    )
    ops.create_index(
        "ix_lockstep_jobs_leases", jobs, ["lease_expires_at"], **_partial("state = 'running'")
    )
    ops.create_index(
        "ix_lockstep_jobs_limit_running",
        jobs,
        ["limit_key"],
        **_partial("state = 'running' AND limit_key IS NOT NULL"),
    )
    ops.create_index("ix_lockstep_jobs_finished", jobs, ["finished_at"], **_partial(_FINAL))
    ops.create_index(
        "uq_lockstep_jobs_unique_key",
        jobs,
        ["unique_key"],
        unique=True,
        **_partial(f"unique_key IS NOT NULL AND {_LIVE}"),
    )
    ops.create_index(
        "uq_lockstep_jobs_schedule_key",
        jobs,
        ["schedule_key"],
        unique=True,
        **_partial("schedule_key IS NOT NULL"),
    )
    ops.create_table(
        "lockstep_job_queues",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_at", time),
    )
    ops.create_table(
        "lockstep_job_buckets",
        sa.Column("name", sa.String(400), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", time, nullable=False),
    )
    ops.create_table(
        "lockstep_job_schedules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("last_tick", time, nullable=False),
    )


def _drop_1(ops: Operations) -> None:
    for table in (
        "lockstep_job_schedules",
        "lockstep_job_buckets",
        "lockstep_job_queues",
        "lockstep_jobs",  # its indexes go with it
    ):
        ops.drop_table(table)


JOBS_TABLES = VersionedTables(
    "jobs",
    label="jobs",
    symbol="JOBS_TABLES",
    marker="lockstep_jobs",
    metadata=metadata,
    revisions=[
        Revision(1, "lockstep_jobs, _job_queues, _job_buckets, _job_schedules", _create_1, _drop_1),
    ],
)


def ensure_jobs_tables(connection: Connection) -> None:
    """Bring the jobs tables to the latest revision on a sync connection (tests and schemas
    built without migrations; use ``run_sync`` from async code)."""
    JOBS_TABLES.ensure(connection)
