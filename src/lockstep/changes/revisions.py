"""The change log's tables, revision by revision. Released revisions never change.

Revision 1 (lockstep 0.1): ``lockstep_changes`` and the feed's two rows in
``lockstep_meta`` (a fresh generation, nothing compacted). To change these tables, append a
revision: its ``upgrade`` alters revision n - 1 into n (``ops.batch_alter_table`` keeps it
working on SQLite), its ``downgrade`` undoes that; update the live definition in
:mod:`.log` to match (``tests/lockstep/test_schema.py`` compares them), and say in the
changelog which ``CHANGE_LOG_TABLES.upgrade(op, to=n)`` applications must add.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy.engine import Connection

from lockstep.changes.log import metadata
from lockstep.schema import Revision, VersionedTables

_meta = sa.table("lockstep_meta", sa.column("name"), sa.column("value"))


def _create_1(ops: Operations) -> None:
    ops.create_table(
        "lockstep_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("payload", sa.Text(), nullable=False),
        sqlite_autoincrement=True,
    )
    ops.create_index("ix_lockstep_changes_txid", "lockstep_changes", ["txid"])
    bind = ops.get_bind()
    names = ("changes.generation", "changes.compacted_below")
    if bind.execute(sa.select(_meta.c.name).where(_meta.c.name.in_(names))).first() is None:
        bind.execute(
            sa.insert(_meta),
            [
                {"name": "changes.generation", "value": uuid.uuid4().hex[:12]},
                {"name": "changes.compacted_below", "value": "0"},
            ],
        )


def _drop_1(ops: Operations) -> None:
    ops.drop_index("ix_lockstep_changes_txid", table_name="lockstep_changes")
    ops.drop_table("lockstep_changes")
    ops.get_bind().execute(
        sa.delete(_meta).where(_meta.c.name.in_(("changes.generation", "changes.compacted_below")))
    )


CHANGE_LOG_TABLES = VersionedTables(
    "change_log",
    label="change log",
    symbol="CHANGE_LOG_TABLES",
    marker="lockstep_changes",
    metadata=metadata,
    revisions=[
        Revision(1, "lockstep_changes; the feed's generation", _create_1, _drop_1),
    ],
)


def ensure_change_log(connection: Connection) -> None:
    """Bring the change-log tables to the latest revision on a sync connection (tests and
    schemas built without migrations; use ``run_sync`` from async code)."""
    CHANGE_LOG_TABLES.ensure(connection)
