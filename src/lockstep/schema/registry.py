"""``lockstep_meta``: lockstep's own bookkeeping in the application's database.

One small key-value table shared by every set of lockstep tables::

    lockstep_meta(name, value)     schema.<set> = revision number; the change log's
                                   generation and compaction watermark; ...

Its DDL below is frozen: it is the table every released version of lockstep created (first
with the change log), so a database from before revisions were recorded already has it.
It is created when the first set of lockstep tables is, and dropped when the last one is
downgraded to nothing and no row is left.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy import Column, MetaData, String, Table, delete, insert, inspect, select, update
from sqlalchemy.engine import Connection

NAME = "lockstep_meta"

metadata = MetaData()

meta_table = Table(
    NAME,
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
)


def exists(connection: Connection) -> bool:
    return inspect(connection).has_table(NAME)


def create(ops: Operations) -> None:
    """Create the table (frozen DDL; identical to what lockstep 0.1 created)."""
    ops.create_table(
        NAME,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )


def read(connection: Connection, name: str) -> str | None:
    """The value of ``name``; None when it is not set or the table does not exist."""
    if not exists(connection):
        return None
    value = connection.execute(select(meta_table.c.value).where(meta_table.c.name == name))
    return value.scalar()


def write(connection: Connection, name: str, value: str) -> None:
    """Set ``name`` to ``value`` (the table must exist)."""
    done = connection.execute(
        update(meta_table).where(meta_table.c.name == name).values(value=value)
    )
    if not done.rowcount:
        connection.execute(insert(meta_table).values(name=name, value=value))


def forget(connection: Connection, *names: str) -> None:
    """Delete ``names``; then drop the table if nothing is left in it."""
    connection.execute(delete(meta_table).where(meta_table.c.name.in_(names)))
    left = connection.execute(select(sa.func.count()).select_from(meta_table)).scalar()
    if not left:
        meta_table.drop(connection)
