"""The shape log's observer of the write path: every committed change to a shaped table
becomes a row of ``lockstep_shape_log`` with its images before and after, in the writing
transaction.

Why images are logged rather than read at delivery: a shape needs to know, for each
changed row, whether it was in the shape before and is in it after (a row whose status
leaves the filter, or that moves to another tenant, must reach its old subscribers as a
delete), and only the values at commit say that. Reading rows when a client asks would
see a later state, lose the "before", and answer the same offset differently each time.

How each write is imaged (the write path hands us every one, see :mod:`lockstep.db.writes`):

* rows with known keys (ORM, inserts with values, updates by key): the image before is
  the write path's own (read by key, ``FOR UPDATE`` on PostgreSQL); the image after is
  read back by key at commit, so defaults, triggers and ``onupdate`` values are the
  database's;
* ``UPDATE``/``DELETE ... WHERE`` and database cascades: the rows they will touch are read
  (``FOR UPDATE``) before the statement runs, then read back at commit;
* what cannot be named row by row (``INSERT ... SELECT``, upserts, ``text()``, an insert
  without its keys, more than ``max_rows`` rows of one table): a *rotation* of the table,
  after which its shapes answer 409 must-refetch.

Positions: the commit takes the next value of ``shape.position`` with an ``UPDATE`` whose
row lock it holds until COMMIT, so positions are dense and in commit order (on PostgreSQL
another shaped commit waits at that point for this one to finish; see docs/decisions.md).
A reader that sees position ``p`` therefore sees every position below it. The observer
commits in ``Phase.RECORD``, after the change feed's ``LOG``, and takes the feed's
``txid`` for its rows, which is what write responses hand back.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Table, insert, select, text, tuple_, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement

from lockstep.changes import committing_changeset
from lockstep.db import MISSING, Columns, Phase, RowWrite, Write
from lockstep.offline.messages import Entry
from lockstep.offline.tables import POSITION, shape_log, sync_state
from lockstep.offline.values import ColumnCodec, codec_for

_POSITION = "lockstep.shape_position"
"""Where a committing session keeps its log position and entries until it has committed."""

MAX_ROWS = 10_000
"""Rows of one table one transaction may change and still be logged row by row; above it
the table rotates (a bulk import: its clients refetch instead of reading every row)."""


Image = dict[str, str | None]


@dataclass(frozen=True, slots=True)
class _Touched:
    table: str
    key: tuple[Any, ...]
    before: Mapping[str, Any] | None  # None: the row did not exist (an insert)


@dataclass(frozen=True, slots=True)
class _Rotate:
    table: str
    reason: str


class ShapedTable:
    """A table some shape reads: its SQLAlchemy table, key and column codecs."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.name = str(table.name)
        self.key = tuple(str(c.name) for c in table.primary_key.columns)
        self.codecs: dict[str, ColumnCodec] = {str(c.name): codec_for(c) for c in table.columns}

    def image(self, row: Mapping[str, Any]) -> dict[str, str | None]:
        """A row as column → PostgreSQL text."""
        return {name: codec.text(row.get(name)) for name, codec in self.codecs.items()}

    def key_text(self, key: tuple[Any, ...]) -> str:
        texts = [self.codecs[c].text(v) for c, v in zip(self.key, key, strict=True)]
        return orjson.dumps(texts).decode()


class ShapeCapture:
    """Writes the shape log for the tables in ``tables`` (name → :class:`ShapedTable`).

    ``on_commit(position, entries)`` is called once a transaction that logged at
    ``position`` has committed (in the committing thread), with what it logged as
    ``(table, entry)`` pairs in log order, so readers waiting for the log to move learn of
    this process's commits, and what they wrote, without reading the database."""

    phase = Phase.RECORD

    def __init__(
        self,
        tables: Mapping[str, ShapedTable],
        *,
        max_rows: int = MAX_ROWS,
        on_commit: Callable[[int, list[tuple[str, Entry]]], None] | None = None,
    ) -> None:
        self.tables = tables
        self.max_rows = max_rows
        self.on_commit = on_commit

    def watched(self, table: str) -> Collection[str] | None:
        shaped = self.tables.get(table)
        return None if shaped is None else tuple(shaped.codecs)

    def observe(self, session: Session, write: Write) -> Iterable[_Touched | _Rotate]:
        shaped = self.tables.get(write.table)
        if shaped is None or (write.sa_table is not None and write.sa_table is not shaped.table):
            return []
        if isinstance(write, RowWrite):
            return self._rows(shaped, write)
        if write.op == "insert" or write.where is None:
            return [_Rotate(shaped.name, f"{write.op} of rows lockstep cannot name")]
        if isinstance(write.params, list | tuple):
            return [_Rotate(shaped.name, "an executemany statement with a WHERE")]
        # Read the rows the statement will touch before it runs (locked on PostgreSQL, so
        # they cannot change before it does); their after images are read at commit.
        stmt = select(*(shaped.table.c[c] for c in shaped.codecs)).where(write.where)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        bound = {k: v for k, v in dict(write.params or {}).items() if isinstance(k, str)}
        rows = session.connection().execute(stmt, bound).mappings().all()
        if len(rows) > self.max_rows:
            return [_Rotate(shaped.name, f"more than {self.max_rows} rows in one statement")]
        return [_Touched(shaped.name, tuple(r[c] for c in shaped.key), dict(r)) for r in rows]

    def _rows(self, shaped: ShapedTable, write: RowWrite) -> list[_Touched | _Rotate]:
        rows = write.after if write.op == "insert" else write.before
        if len(rows) > self.max_rows:  # before building a dict per row of an import
            return [_Rotate(shaped.name, f"more than {self.max_rows} rows in one write")]
        if isinstance(rows, Columns):
            if any(c not in rows for c in shaped.key):
                return [_Rotate(shaped.name, "rows written without their key")]
            images: list[Mapping[str, Any]] = list(rows.rows())
        else:
            images = list(rows)
        out: list[_Touched | _Rotate] = []
        for image in images:
            key = tuple(image.get(c, MISSING) for c in shaped.key)
            if any(_unknown(v) for v in key):
                return [_Rotate(shaped.name, "a row written without its key")]
            before = None if write.op == "insert" else image
            if before is not None and any(_unread(v) for v in before.values()):
                return [_Rotate(shaped.name, "a row whose image before could not be read")]
            out.append(_Touched(shaped.name, key, before))
        return out

    def commit(self, session: Session, items: list[Any]) -> None:
        if not items:
            return
        rotated = {i.table for i in items if isinstance(i, _Rotate)}
        first: dict[tuple[str, tuple[Any, ...]], _Touched] = {}
        for item in items:
            if isinstance(item, _Touched) and item.table not in rotated:
                first.setdefault((item.table, item.key), item)
        if len(first) > self.max_rows * 4:
            rotated |= {table for table, _ in first}
            first = {}
        entries: list[tuple[str, str | None, Image | None, Image | None]] = [
            (table, None, None, None) for table in sorted(rotated)
        ]
        for table_name in sorted({t for t, _ in first}):
            shaped = self.tables[table_name]
            touched = [t for (name, _), t in first.items() if name == table_name]
            after = _read(session, shaped, [t.key for t in touched])
            for item in touched:
                old = None if item.before is None else shaped.image(item.before)
                row = after.get(item.key)
                new = None if row is None else shaped.image(row)
                if old != new:
                    entries.append((table_name, shaped.key_text(item.key), old, new))
        if not entries:
            return
        connection = session.connection()
        position = int(
            connection.execute(
                update(sync_state)
                .where(sync_state.c.name == POSITION)
                .values(value=sync_state.c.value + 1)
                .returning(sync_state.c.value)
            ).scalar_one()
        )
        changeset = committing_changeset(session)
        if changeset is not None:
            txid = changeset.txid
        elif connection.dialect.name == "postgresql":
            txid = int(connection.execute(_PG_TXID).scalar_one())
        else:  # a shaped table the change feed does not track: positions stand in
            txid = position
        connection.execute(
            insert(shape_log),
            [
                {
                    "position": position,
                    "op": op,
                    "txid": txid,
                    "tbl": table,
                    "key": key,
                    "before": None if old is None else orjson.dumps(old).decode(),
                    "after": None if new is None else orjson.dumps(new).decode(),
                }
                for op, (table, key, old, new) in enumerate(entries)
            ],
        )
        for table in rotated:
            _set_state(connection, f"rotated.{table}", position)
        logged = [(table, Entry(position, txid, key, old, new)) for table, key, old, new in entries]
        session.info[_POSITION] = (position, logged)

    def committed(self, session: Session) -> None:
        done = session.info.pop(_POSITION, None)
        if done is not None and self.on_commit is not None:
            self.on_commit(*done)

    def rolled_back(self, session: Session) -> None:
        session.info.pop(_POSITION, None)


_PG_TXID = text("SELECT pg_current_xact_id()::text::bigint")


def _unread(value: Any) -> bool:
    return value is MISSING or isinstance(value, ClauseElement)


def _unknown(value: Any) -> bool:
    return value is None or _unread(value)


def _read(
    session: Session, shaped: ShapedTable, keys: list[tuple[Any, ...]]
) -> dict[tuple[Any, ...], Mapping[str, Any]]:
    """The rows of ``keys`` as this transaction leaves them (absent: deleted)."""
    table = shaped.table
    pk = [table.c[c] for c in shaped.key]
    found: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        where = pk[0].in_([k[0] for k in batch]) if len(pk) == 1 else _tuple_in(pk, batch)
        stmt = select(*(table.c[c] for c in shaped.codecs)).where(where)
        for row in session.connection().execute(stmt).mappings():
            found[tuple(row[c] for c in shaped.key)] = dict(row)
    return found


def _tuple_in(columns: list[Any], keys: list[tuple[Any, ...]]) -> Any:
    return tuple_(*columns).in_(keys)


def _set_state(connection: Any, name: str, value: int) -> None:
    done = connection.execute(
        update(sync_state).where(sync_state.c.name == name).values(value=value)
    )
    if not done.rowcount:
        connection.execute(insert(sync_state).values(name=name, value=value))
