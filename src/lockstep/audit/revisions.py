"""The audit trail's tables, revision by revision. Released revisions never change.

Revision 1: ``lockstep_audit`` (one row per audited write: chain, position, time, actor,
table, row key, operation, the changed values as JSON, the previous entry's hash and its own)
and ``lockstep_audit_heads`` (each chain's last position and hash, the row a writer locks to
append). To change them, append a revision and update :data:`metadata` to match.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy.engine import Connection

from lockstep.schema import Revision, VersionedTables

metadata = sa.MetaData()

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

audit_table = sa.Table(
    "lockstep_audit",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("chain", sa.String(100), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=True),
    sa.Column("table_name", sa.String(100), nullable=False),
    sa.Column("row_key", sa.String(500), nullable=True),
    sa.Column("op", sa.String(10), nullable=False),
    sa.Column("changes", sa.Text(), nullable=False),
    sa.Column("previous", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("chain", "seq", name="uq_lockstep_audit_chain_seq"),
    sa.Index("ix_lockstep_audit_row", "table_name", "row_key"),
)

heads_table = sa.Table(
    "lockstep_audit_heads",
    metadata,
    sa.Column("chain", sa.String(100), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


def _create_1(ops: Operations) -> None:
    ops.create_table(
        "lockstep_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(100), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("table_name", sa.String(100), nullable=False),
        sa.Column("row_key", sa.String(500), nullable=True),
        sa.Column("op", sa.String(10), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("previous", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("chain", "seq", name="uq_lockstep_audit_chain_seq"),
    )
    ops.create_index("ix_lockstep_audit_row", "lockstep_audit", ["table_name", "row_key"])
    ops.create_table(
        "lockstep_audit_heads",
        sa.Column("chain", sa.String(100), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def _drop_1(ops: Operations) -> None:
    ops.drop_table("lockstep_audit_heads")
    ops.drop_index("ix_lockstep_audit_row", table_name="lockstep_audit")
    ops.drop_table("lockstep_audit")


AUDIT_TABLES = VersionedTables(
    "audit",
    label="audit trail",
    symbol="AUDIT_TABLES",
    marker="lockstep_audit",
    metadata=metadata,
    revisions=[Revision(1, "the audit trail and its chain heads", _create_1, _drop_1)],
)


def ensure_audit_tables(connection: Connection) -> None:
    """Create the audit tables at the latest revision (tests; apps without migrations)."""
    AUDIT_TABLES.ensure(connection)
