"""Offline sync's tables, revision by revision (released revisions never change)::

    lockstep_shape_log(position, op, txid, tbl, key, before, after, created_at)
        one row per row a shaped table's commit changed: its images before and after, as
        JSON of PostgreSQL text values; ``key`` NULL marks a rotation (the table's shapes
        must be refetched: a write whose rows cannot be named, a bulk import)
    lockstep_sync_state(name, value)
        ``shape.position`` (the last position given), ``shape.compacted_below``, and
        ``rotated.<table>`` (the position of that table's last rotation)
    lockstep_sync_clients(client_id, owner, last_mutation_id, updated_at)
    lockstep_sync_mutations(client_id, mutation_id, outcome, response, created_at)
        idempotent pushes: a client's last applied mutation and each mutation's stored answer

Plus ``offline.generation`` in ``lockstep_meta``. An app's migration applies them with
``OFFLINE_TABLES.upgrade(op, to=1)``.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text, func
from sqlalchemy.engine import Connection

from lockstep.schema import Revision, VersionedTables

metadata = MetaData()

shape_log = Table(
    "lockstep_shape_log",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("op", Integer, primary_key=True, autoincrement=False),
    Column("txid", BigInteger, nullable=False),
    Column("tbl", String(128), nullable=False),
    Column("key", Text, nullable=True),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    sa.Index("ix_lockstep_shape_log_tbl_position", "tbl", "position"),
)

sync_state = Table(
    "lockstep_sync_state",
    metadata,
    Column("name", String(160), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

sync_clients = Table(
    "lockstep_sync_clients",
    metadata,
    Column("client_id", String(100), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("last_mutation_id", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

sync_mutations = Table(
    "lockstep_sync_mutations",
    metadata,
    Column("client_id", String(100), primary_key=True),
    Column("mutation_id", BigInteger, primary_key=True, autoincrement=False),
    Column("outcome", String(20), nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

POSITION = "shape.position"
COMPACTED_BELOW = "shape.compacted_below"
GENERATION = "offline.generation"

_meta = sa.table("lockstep_meta", sa.column("name"), sa.column("value"))
_state = sa.table("lockstep_sync_state", sa.column("name"), sa.column("value"))


def _create_1(ops: Operations) -> None:
    ops.create_table(
        "lockstep_shape_log",
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.Integer(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("tbl", sa.String(128), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("position", "op", name="lockstep_shape_log_pkey"),
    )
    ops.create_index(
        "ix_lockstep_shape_log_tbl_position", "lockstep_shape_log", ["tbl", "position"]
    )
    ops.create_table(
        "lockstep_sync_state",
        sa.Column("name", sa.String(160), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="lockstep_sync_state_pkey"),
    )
    ops.create_table(
        "lockstep_sync_clients",
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("last_mutation_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("client_id", name="lockstep_sync_clients_pkey"),
    )
    ops.create_table(
        "lockstep_sync_mutations",
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("mutation_id", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("client_id", "mutation_id", name="lockstep_sync_mutations_pkey"),
    )
    bind = ops.get_bind()
    bind.execute(
        sa.insert(_state), [{"name": POSITION, "value": 0}, {"name": COMPACTED_BELOW, "value": 0}]
    )
    bind.execute(sa.insert(_meta).values(name=GENERATION, value=uuid.uuid4().hex[:12]))


def _drop_1(ops: Operations) -> None:
    ops.drop_table("lockstep_sync_mutations")
    ops.drop_table("lockstep_sync_clients")
    ops.drop_table("lockstep_sync_state")
    ops.drop_index("ix_lockstep_shape_log_tbl_position", table_name="lockstep_shape_log")
    ops.drop_table("lockstep_shape_log")
    ops.get_bind().execute(sa.delete(_meta).where(_meta.c.name == GENERATION))


OFFLINE_TABLES = VersionedTables(
    "offline",
    label="offline sync",
    symbol="OFFLINE_TABLES",
    marker="lockstep_shape_log",
    metadata=metadata,
    revisions=[
        Revision(1, "shape log, sync state, push clients and mutations", _create_1, _drop_1),
    ],
)


def ensure_offline_tables(connection: Connection) -> None:
    """Bring offline sync's tables to the latest revision on a sync connection (tests and
    schemas built without migrations; use ``run_sync`` from async code)."""
    OFFLINE_TABLES.ensure(connection)


def new_generation() -> str:
    return uuid.uuid4().hex[:12]
