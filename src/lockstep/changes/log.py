"""The change log: one row per committed transaction that changed tracked tables.

It is the source of truth every consumer resumes from. Rows are written inside the writing
transaction (an outbox), so a change exists in the log if and only if its transaction
committed. Schema (the live definition of the latest revision of ``CHANGE_LOG_TABLES``,
whose frozen DDL an application's migration applies; see :mod:`.revisions`)::

    lockstep_changes(id, txid, created_at, payload)   payload = JSON list of changes
    lockstep_meta(name, value)                         generation, compaction watermark
                                                       (lockstep's shared bookkeeping table)

On PostgreSQL ``txid`` is the writer's ``pg_current_xact_id()``, which the feed needs to
never skip a transaction that commits after a later one.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.selectable import CTE

from lockstep.db.batch import insert_row

# The log's generation and watermark are rows of lockstep's shared bookkeeping table.
from lockstep.schema import meta_table as meta_table
from lockstep.types import Change, ChangeSet

metadata = MetaData()

_id_type = BigInteger().with_variant(Integer(), "sqlite")

changes_table = Table(
    "lockstep_changes",
    metadata,
    Column("id", _id_type, primary_key=True, autoincrement=True),
    Column("txid", BigInteger, nullable=True, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("payload", Text, nullable=False),
    sqlite_autoincrement=True,  # never reuse an id, even after compaction empties the log
)

_PG_TXID = text("pg_current_xact_id()::text::bigint")
_PG_INSERT = (
    insert(changes_table)
    .values(payload=bindparam("payload", type_=Text()), txid=_PG_TXID)
    .returning(changes_table.c.id, changes_table.c.txid)
)
_SQLITE_INSERT = "INSERT INTO lockstep_changes (payload) VALUES (?)"

GENERATION = "changes.generation"
COMPACTED_BELOW = "changes.compacted_below"  # every row with id (SQLite) / txid (PG) below is gone


def encode_payload(changes: tuple[Change, ...] | list[Change]) -> str:
    return orjson.dumps([change.to_json() for change in changes]).decode()


def decode_row(row_id: int, txid: int | None, payload: str) -> ChangeSet:
    changes = tuple(Change.from_json(item) for item in orjson.loads(payload))
    return ChangeSet(id=row_id, txid=txid if txid is not None else row_id, changes=changes)


@dataclass(frozen=True, slots=True)
class Prelude:
    """Writes that run in the same statement as a transaction's log row, before it
    (PostgreSQL): data-modifying CTEs, each gated on the one before, so they run in order;
    ``last`` gates the log insert. ``params`` are their bound values; ``cache`` belongs to
    this chain of CTEs (the same object for every prelude of the same shape) and keeps the
    statements built around it. Built by rollup maintenance: its upserts then cost no round
    trip of their own."""

    ctes: tuple[CTE, ...]
    params: Mapping[str, Any]
    cache: MutableMapping[str, Any]

    @property
    def last(self) -> CTE:
        return self.ctes[-1]


def write_changeset(
    connection: Connection, changes: list[Change], prelude: Prelude | None = None
) -> ChangeSet:
    """Insert one log row for ``changes`` on ``connection`` (inside the writer's transaction),
    after running ``prelude`` in the same statement (PostgreSQL only)."""
    payload = encode_payload(changes)
    if connection.dialect.name != "postgresql":
        row_id = insert_row(connection, _SQLITE_INSERT, (payload,))
        return ChangeSet(id=row_id, txid=row_id, changes=tuple(changes))
    if prelude is not None:
        row = connection.execute(
            _after_prelude(prelude), {**prelude.params, "payload": payload}
        ).one()
    else:
        row = connection.execute(_PG_INSERT, {"payload": payload}).one()
    return ChangeSet(id=row.id, txid=row.txid, changes=tuple(changes))


def run_prelude(connection: Connection, prelude: Prelude) -> None:
    """Run ``prelude`` alone (a transaction that logs nothing)."""
    found = prelude.cache.get("alone")
    if found is None:
        found = prelude.cache["alone"] = select(func.count()).select_from(prelude.last)
    connection.execute(found, dict(prelude.params))


def _after_prelude(prelude: Prelude) -> Any:
    found = prelude.cache.get("log insert")
    if found is None:
        done = select(func.count()).select_from(prelude.last).scalar_subquery()
        source: Any = select(
            bindparam("payload", type_=Text()).label("payload"),
            literal_column(_PG_TXID.text, BigInteger).label("txid"),
        ).where(done >= literal_column("0"))
        found = prelude.cache["log insert"] = (
            insert(changes_table)
            .from_select(["payload", "txid"], source)
            .returning(changes_table.c.id, changes_table.c.txid)
            .add_cte(*prelude.ctes)
        )
    return found
