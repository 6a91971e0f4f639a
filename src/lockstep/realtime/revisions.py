"""The realtime history tables, revision by revision. Released revisions never change.

Revision 1: ``lockstep_channels`` (a channel's epoch and top offset) and
``lockstep_publications`` (the kept publications, keyed by channel and offset, with an index
on their age for trimming). To change them, append a revision (see
``lockstep.changes.revisions``) and update the live definition in :mod:`.history`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy.engine import Connection

from lockstep.realtime.history import metadata
from lockstep.schema import Revision, VersionedTables


def _create_1(ops: Operations) -> None:
    time = sa.DateTime(timezone=True)
    ops.create_table(
        "lockstep_channels",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("epoch", sa.String(16), nullable=False),
        sa.Column("top", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", time, nullable=False, server_default=sa.func.now()),
    )
    ops.create_table(
        "lockstep_publications",
        sa.Column("channel", sa.String(255), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", time, nullable=False, server_default=sa.func.now()),
    )
    ops.create_index("ix_lockstep_publications_created_at", "lockstep_publications", ["created_at"])


def _drop_1(ops: Operations) -> None:
    ops.drop_index("ix_lockstep_publications_created_at", table_name="lockstep_publications")
    ops.drop_table("lockstep_publications")
    ops.drop_table("lockstep_channels")


REALTIME_TABLES = VersionedTables(
    "realtime",
    label="realtime history",
    symbol="REALTIME_TABLES",
    marker="lockstep_channels",
    metadata=metadata,
    revisions=[
        Revision(1, "lockstep_channels, lockstep_publications", _create_1, _drop_1),
    ],
)


def ensure_realtime_tables(connection: Connection) -> None:
    """Bring the realtime tables to the latest revision on a sync connection (tests and
    schemas built without migrations)."""
    REALTIME_TABLES.ensure(connection)
