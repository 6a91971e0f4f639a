"""Publications made in a write transaction: declared broadcasts of table writes, and
``publish(session, channel, data)``.

Realtime is an observer of lockstep's one write path (:mod:`lockstep.db.writes`), so it sees
every write form the change feed sees, with the same savepoint rules: what a rolled-back
savepoint published is dropped, a rolled-back transaction publishes nothing. At commit
(``Phase.LOG``) the transaction's publications to channels with history take their offsets
and are kept (:func:`~lockstep.realtime.history.append`), in the transaction; after commit
they are handed to the commit hook, in the order they were made.

A :class:`Broadcast` maps a table to channels with a template over its columns
(``"case:{case_id}"``) and renders each row write with ``data(event)``:

* rows whose values are known (ORM objects, inserts with values, updates and deletes by
  key, bulk inserts): one publication per row and channel (an update that moves a row
  publishes to the channels before and after); above :data:`BULK_ROWS` rows of a table in
  one transaction, one key-less event per channel and operation instead (``count`` rows);
* statements that write rows they do not name: one key-less event per channel, the channels
  taken from what the statement is known to touch (a cascade from case 7), else read from
  the table (``SELECT DISTINCT`` of the template's columns, before the statement and again at
  commit), so a client is never left unaware of a write to its channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Table, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement

from lockstep.db import (
    MISSING,
    Columns,
    Database,
    Operation,
    Phase,
    RowWrite,
    StatementWrite,
    Write,
    interception_of,
)
from lockstep.exceptions import ConfigurationError
from lockstep.realtime.channels import Channels, template_fields
from lockstep.types import canonical

BULK_ROWS = 1_000
"""Rows of one table in one transaction above which a broadcast sends one event per channel."""

COMMITTING = "lockstep.realtime.committing"
COMMITTED = "lockstep.realtime.committed"
INSTALLED = "_lockstep_realtime_capture"


@dataclass(frozen=True, slots=True)
class RowEvent:
    """One write as a broadcast renders it. ``row``: the row as written (insert, update) or
    as it was (delete), the primary key and the broadcast's columns; ``key`` its primary key
    (canonical strings). Key-less events (``row`` and ``key`` None) stand for ``count``
    rows, or an unknown number when ``count`` is None."""

    table: str
    op: Operation
    key: tuple[str, ...] | None
    row: Mapping[str, Any] | None
    changed: frozenset[str] | None = None
    count: int | None = None


def default_data(event: RowEvent) -> Any:
    """``{"table", "op", "key"}`` (and ``count`` for key-less events): enough for a client
    to refetch what changed."""
    body: dict[str, Any] = {"table": event.table, "op": event.op, "key": event.key}
    if event.key is None:
        body["count"] = event.count
    return body


class Broadcast:
    """Publish the writes of ``table`` to the channels ``channel`` names (a template over
    the table's columns), rendered by ``data`` (default :func:`default_data`). ``columns``:
    further columns ``data`` reads from ``event.row``."""

    def __init__(
        self,
        table: Table,
        channel: str,
        *,
        data: Callable[[RowEvent], Any] = default_data,
        columns: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.name = str(table.name)
        self.template = channel
        self.fields = template_fields(channel)
        missing = [c for c in (*self.fields, *columns) if c not in table.c]
        if missing:
            raise ConfigurationError(f"broadcast of {self.name!r}: no column(s) {missing}")
        self.columns = tuple(dict.fromkeys([*self.fields, *columns]))
        self.data = data
        self.pk = tuple(str(c.name) for c in table.primary_key.columns)

    def channel_of(self, row: Mapping[str, Any]) -> str | None:
        """The channel of a row image, or None when a template column is not known."""
        values = {}
        for name in self.fields:
            value = row.get(name, MISSING)
            if value is MISSING or value is None or isinstance(value, ClauseElement):
                return None
            values[name] = canonical(value)
        return self.template.format(**values)

    def channels_where(self, session: Session, where: Any, params: Any) -> set[str]:
        """The channels of the rows ``where`` selects now (every row when None)."""
        stmt = select(*(self.table.c[c] for c in self.fields)).distinct()
        if where is not None:
            stmt = stmt.where(where)
        sets = params if isinstance(params, list | tuple) and params else [params or {}]
        found: set[str] = set()
        for one in sets:
            bound = {k: v for k, v in dict(one).items() if isinstance(k, str)}
            for row in session.connection().execute(stmt, bound if where is not None else {}):
                channel = self.channel_of(dict(row._mapping))
                if channel is not None:
                    found.add(channel)
        return found


@dataclass(frozen=True, slots=True)
class Pending:
    """A publication waiting for its transaction: ``data`` is JSON bytes."""

    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class _Rescan:
    """Channels to read again at commit: a statement whose rows were unknown before it ran."""

    broadcast: Broadcast
    op: Operation
    seen: frozenset[str]


class Capture:
    """The realtime observer of a database's write path (see the module doc)."""

    phase = Phase.LOG

    def __init__(self, channels: Channels, broadcasts: Iterable[Broadcast]) -> None:
        self.channels = channels
        self.broadcasts: dict[str, list[Broadcast]] = {}
        for broadcast in broadcasts:
            channels.require(broadcast.template.format(**dict.fromkeys(broadcast.fields, "0")))
            self.broadcasts.setdefault(broadcast.name, []).append(broadcast)
        self.append: Callable[[Any, list[Pending]], list[Any]] | None = None

    def install(self, database: Database) -> None:
        setattr(database.session_class, INSTALLED, self)
        database.observe(self)

    def publish(self, session: Session, channel: str, data: Any) -> None:
        """Publish ``data`` to ``channel`` if and when ``session``'s transaction commits."""
        self.channels.require(channel)
        interception_of(type(session)).record(session, self, [Pending(channel, orjson.dumps(data))])

    # -- the observer ------------------------------------------------------------------------

    def watched(self, table: str) -> Sequence[str] | None:
        found = self.broadcasts.get(table)
        if not found:
            return None
        return tuple(dict.fromkeys(c for b in found for c in b.columns))

    def observe(self, session: Session, write: Write) -> list[Any]:
        out: list[Any] = []
        for broadcast in self.broadcasts.get(write.table, ()):
            if isinstance(write, RowWrite):
                out.extend(_rows(broadcast, write))
            else:
                out.extend(_statement(session, broadcast, write))
        return out

    def commit(self, session: Session, items: list[Any]) -> None:
        pending: list[Pending] = []
        for item in items:
            if isinstance(item, _Rescan):
                now = item.broadcast.channels_where(session, None, None)
                event = RowEvent(item.broadcast.name, item.op, None, None)
                data = orjson.dumps(item.broadcast.data(event))
                pending.extend(Pending(c, data) for c in sorted(now - item.seen))
            else:
                pending.append(item)
        if pending and self.append is not None:
            session.info[COMMITTING] = self.append(session.connection(), pending)

    def committed(self, session: Session) -> None:
        found = session.info.pop(COMMITTING, None)
        if found:
            session.info.setdefault(COMMITTED, []).extend(found)

    def rolled_back(self, session: Session) -> None:
        session.info.pop(COMMITTING, None)


def _rows(broadcast: Broadcast, write: RowWrite) -> list[Pending]:
    images: Sequence[Mapping[str, Any]]
    rows = write.after if write.op != "delete" else write.before
    count = len(rows)
    if count > BULK_ROWS:
        # A bulk import: one key-less event per channel, not one publication per row.
        if isinstance(rows, Columns):
            columns = [rows[c] if c in rows else [MISSING] * count for c in broadcast.fields]
            fields = broadcast.fields
            images = [dict(zip(fields, v, strict=True)) for v in zip(*columns, strict=True)]
        else:
            images = rows
        channels = {broadcast.channel_of(image) for image in images}
        event = RowEvent(broadcast.name, write.op, None, None, write.changed, count)
        data = orjson.dumps(broadcast.data(event))
        return [Pending(c, data) for c in sorted(c for c in channels if c is not None)]
    images = list(rows.rows()) if isinstance(rows, Columns) else rows
    before: Sequence[Mapping[str, Any] | None] = (
        write.before if write.op == "update" else [None] * len(images)
    )
    out: list[Pending] = []
    for image, old in zip(images, before, strict=True):
        named = [broadcast.channel_of(image)]
        if old is not None:
            named.append(broadcast.channel_of(old))
        key_values = [image.get(c, MISSING) for c in broadcast.pk]
        known = all(v is not MISSING and not isinstance(v, ClauseElement) for v in key_values)
        key = tuple(canonical(v) for v in key_values) if known else None
        event = RowEvent(broadcast.name, write.op, key, image, write.changed)
        data = orjson.dumps(broadcast.data(event))
        out.extend(Pending(c, data) for c in dict.fromkeys(named) if c is not None)
    return out


def _statement(session: Session, broadcast: Broadcast, write: StatementWrite) -> list[Any]:
    event = RowEvent(broadcast.name, write.op, None, None)
    data = orjson.dumps(broadcast.data(event))
    if all(c in write.known for c in broadcast.fields):
        values = [sorted(write.known[c], key=canonical) for c in broadcast.fields]
        channels = _combinations(broadcast, values)
        return [Pending(c, data) for c in channels]
    exact = write.op in ("update", "delete") and write.where is not None and write.sql is None
    where = write.where if exact else None
    before = broadcast.channels_where(session, where, write.params if exact else None)
    out: list[Any] = [Pending(c, data) for c in sorted(before)]
    if not exact:
        # Rows it inserts or moves may land in channels that have no row yet.
        out.append(_Rescan(broadcast, write.op, frozenset(before)))
    return out


def _combinations(broadcast: Broadcast, values: list[list[Any]]) -> list[str]:
    combos: list[dict[str, Any]] = [{}]
    for name, options in zip(broadcast.fields, values, strict=True):
        combos = [{**combo, name: option} for combo in combos for option in options]
    found = (broadcast.channel_of(combo) for combo in combos)
    return list(dict.fromkeys(c for c in found if c is not None))
