"""Reading the shape log: its head, entries by position, consistent snapshot pages, and
waiting for the head to move.

Positions are dense and in commit order (see :mod:`.capture`), so "entries after ``p`` up
to ``q``" is a range query and a reader that sees ``q`` sees everything below it. A snapshot
page reads the head, the rows and the log since the snapshot in one database snapshot
(``REPEATABLE READ`` on PostgreSQL, one read transaction on SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from lockstep.changes import ChangeHub
from lockstep.changes.log import changes_table
from lockstep.db import Database
from lockstep.offline import filters
from lockstep.offline.messages import Entry, Row
from lockstep.offline.shapes import ResolvedShape
from lockstep.offline.tables import COMPACTED_BELOW, GENERATION, POSITION, shape_log, sync_state
from lockstep.schema import meta_table

_PG_SNAPSHOT = text(
    "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text, "
    "array_to_string(array(SELECT pg_snapshot_xip(s)), ',') FROM pg_current_snapshot() s"
)


@dataclass(frozen=True, slots=True)
class LogState:
    """Where the log stands: its generation, head, compaction boundary, a table's epoch."""

    generation: str
    head: int
    compacted_below: int
    epoch: int


@dataclass(frozen=True, slots=True)
class SnapshotRead:
    """One page read: the state it was read in, the rows now (texts), the log of the
    table since the snapshot's position, and (first page) the database snapshot's bounds
    for ``snapshot-end``."""

    state: LogState
    rows: list[Row]
    since: list[Entry]
    visible: tuple[str, str, list[str]] | None


RECENT_ENTRIES = 10_000
"""Entries of this process's latest commits kept in memory, so a waiter woken by one
answers without reading the log (a larger commit is read like another process's)."""

RECENT_POSITIONS = 4_096


class ShapeLog:
    """The shape log of one :class:`~lockstep.db.Database`."""

    def __init__(self, database: Database, *, poll_interval: float) -> None:
        self.database = database
        self.poll_interval = poll_interval
        self._generation: str | None = None
        self._head_changed = asyncio.Event()
        self._known_head = 0
        self._polled_head: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # This process's latest commits: position -> what it logged (table, entry), or None
        # for one too large to keep; at most RECENT_ENTRIES entries, the oldest dropped.
        self._recent: dict[int, list[tuple[str, Entry]] | None] = {}
        self._recent_entries = 0
        self._states: dict[str, LogState] = {}  # the last read state of each table
        self._watcher: asyncio.Task[None] | None = None
        self._waiters = 0

    # -- state -----------------------------------------------------------------------------

    def _state(self, connection: Connection, table: str) -> LogState:
        names = [POSITION, COMPACTED_BELOW, f"rotated.{table}"]
        found = dict(
            connection.execute(
                select(sync_state.c.name, sync_state.c.value).where(sync_state.c.name.in_(names))
            ).all()
        )
        if self._generation is None:
            self._generation = connection.execute(
                select(meta_table.c.value).where(meta_table.c.name == GENERATION)
            ).scalar_one()
        state = LogState(
            self._generation,
            int(found[POSITION]),
            int(found[COMPACTED_BELOW]),
            int(found.get(f"rotated.{table}", 0)),
        )
        self._states[table] = state
        return state

    async def state(self, table: str) -> LogState:
        async with self.database.reader() as session:
            return await session.run_sync(lambda s: self._state(s.connection(), table))

    async def head(self) -> int:
        async with self.database.reader() as session:
            value = await session.scalar(
                select(sync_state.c.value).where(sync_state.c.name == POSITION)
            )
        return int(value or 0)

    # -- entries ---------------------------------------------------------------------------

    @staticmethod
    def _entries(connection: Connection, table: str, after: int, upto: int) -> list[Entry]:
        t = shape_log
        rows = connection.execute(
            select(t.c.position, t.c.txid, t.c.key, t.c.before, t.c.after)
            .where(and_(t.c.tbl == table, t.c.position > after, t.c.position <= upto))
            .order_by(t.c.position, t.c.op)
        ).all()
        return [Entry.of_row(*row) for row in rows]

    async def entries(self, table: str, after: int, upto: int) -> tuple[LogState, list[Entry]]:
        """The state, and the entries of ``table`` with positions in ``(after, upto]`` (upto
        capped at the head read in the same snapshot)."""

        def read(session: Session) -> tuple[LogState, list[Entry]]:
            connection = session.connection()
            state = self._state(connection, table)
            return state, self._entries(connection, table, after, min(upto, state.head))

        async with self.database.reader() as session:
            await self._one_snapshot(session)
            return await session.run_sync(read)

    async def _one_snapshot(self, session: Any) -> None:
        if self.database.backend == "postgresql":
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})

    # -- snapshots -------------------------------------------------------------------------

    async def snapshot_page(
        self,
        shape: ResolvedShape,
        *,
        position: int | None,
        after_key: int | None,
        limit: int | None,
    ) -> SnapshotRead:
        """Rows of ``shape`` with keys above ``after_key`` (at most ``limit + 1``) as they
        are now, with the log since ``position`` (None: this is the first page, taken at
        the head read here) — all in one database snapshot. Rows are the texts of the
        shape's columns, in order."""
        definition = shape.definition
        table = definition.shaped.table
        key = table.c[definition.shaped.key[0]]
        names = shape.columns
        codecs = [definition.shaped.codecs[name] for name in names]
        stmt = select(*(table.c[c] for c in names)).where(filters.to_sql(shape.filter, table))
        if after_key is not None:
            stmt = stmt.where(key > after_key)
        stmt = stmt.order_by(*(table.c[c] for c in definition.shaped.key))
        if limit is not None:
            stmt = stmt.limit(limit + 1)

        def read(session: Session) -> SnapshotRead:
            connection = session.connection()
            state = self._state(connection, definition.shaped.name)
            result = connection.execute(stmt)
            rows: list[Row] = []
            # A few hundred at a time, column by column (one formatting pass each): the
            # driver's row objects die young instead of outliving the page.
            while chunk := result.fetchmany(256):
                columns = zip(*chunk, strict=True)
                texts = [codec.texts(column) for codec, column in zip(codecs, columns, strict=True)]
                rows.extend(zip(*texts, strict=True))
            since: list[Entry] = []
            visible = None
            if position is None:
                visible = self._visible(connection)
            elif state.head > position:
                since = self._entries(connection, definition.shaped.name, position, state.head)
            return SnapshotRead(state, rows, since, visible)

        async with self.database.reader() as session:
            await self._one_snapshot(session)
            return await session.run_sync(read)

    def _visible(self, connection: Connection) -> tuple[str, str, list[str]]:
        """The transactions a snapshot includes, as Electric's ``snapshot-end`` says it:
        ids below ``xmin`` and below ``xmax`` but not in ``xip`` (PostgreSQL's own
        snapshot); on SQLite every change-log id up to the newest."""
        if connection.dialect.name == "postgresql":
            xmin, xmax, xip = connection.execute(_PG_SNAPSHOT).one()
            return str(xmin), str(xmax), [x for x in str(xip or "").split(",") if x]
        newest = connection.execute(select(func.max(changes_table.c.id))).scalar()
        bound = str(int(newest or 0) + 1)
        return bound, bound, []

    # -- waiting ---------------------------------------------------------------------------

    async def wait_beyond(self, position: int, within: float) -> int:
        """The head once it is above ``position``, or after ``within`` seconds whatever it
        is. This process's commits wake waiters as they commit (:meth:`advance`); other
        processes' are seen within ``poll_interval`` (one reader per process polls while
        anyone waits)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        deadline = loop.time() + within
        self._waiters += 1
        try:
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.create_task(self._watch())
            while True:
                changed = self._head_changed
                if self._known_head > position:
                    return self._known_head
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return self._known_head
                await ChangeHub.wait(changed, within=remaining)
        finally:
            self._waiters -= 1

    def advance(self, position: int, entries: list[tuple[str, Entry]] | None = None) -> None:
        """A transaction of this process that logged ``entries`` (``(table, entry)``, in
        log order) at ``position`` has committed: keep them for :meth:`recent` and wake
        the waiters below it, with no read (positions are dense and in commit order, so
        everything below is committed too). Callable from any thread."""
        loop = self._loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or loop is running:
            self._committed(position, entries)
        elif not loop.is_closed():  # a closed loop has no waiters left to wake
            loop.call_soon_threadsafe(self._committed, position, entries)

    def _committed(self, position: int, entries: list[tuple[str, Entry]] | None) -> None:
        if entries is not None and len(entries) > RECENT_ENTRIES:
            entries = None  # known to exist, not kept: a read serves it
        self._recent[position] = entries
        self._recent_entries += len(entries or ())
        while self._recent_entries > RECENT_ENTRIES or len(self._recent) > RECENT_POSITIONS:
            oldest = next(iter(self._recent))
            self._recent_entries -= len(self._recent.pop(oldest) or ())
        if position > self._known_head:
            self._set_head(position)

    def recent(
        self, table: str, after: int, upto: int, state: LogState | None = None
    ) -> tuple[LogState, list[Entry]] | None:
        """What :meth:`entries` would read, from this process's latest commits: the entries
        of ``table`` in ``(after, min(upto, head)]`` with the state at the known head, when
        every position in that range was committed here and kept and none rotated the
        table since ``state`` was read; else None (read the log). ``state`` (default: the
        table's last read one): its generation, epoch and compaction stand unless a
        rotation, a position of its own, lies between its head and ``min(upto, head)``."""
        state = state or self._states.get(table)
        head = self._known_head
        last = min(upto, head)
        if state is None or last <= after:
            return None
        found: list[Entry] = []
        # From the state's own head: a rotation between it and `after` moved the epoch.
        for position in range(min(state.head, after) + 1, last + 1):
            logged = self._recent.get(position)
            if logged is None:
                return None  # another process's commit, or one not kept
            for name, entry in logged:
                if name != table:
                    continue
                if entry.key is None:
                    return None  # a rotation: the read says the table's new epoch
                if position > after:
                    found.append(entry)
        return LogState(state.generation, head, state.compacted_below, state.epoch), found

    def _set_head(self, head: int) -> None:
        self._known_head = head
        event, self._head_changed = self._head_changed, asyncio.Event()
        event.set()

    async def _watch(self) -> None:
        """Poll the head for other processes' commits while anyone waits."""
        while self._waiters > 0:
            head = await self.head()
            previous, self._polled_head = self._polled_head, head
            # Higher than known, or lower than last polled: a new log, whose head restarts.
            if head > self._known_head or (previous is not None and head < previous):
                self._set_head(head)
            await asyncio.sleep(self.poll_interval)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
            self._watcher = None

    # -- compaction ------------------------------------------------------------------------

    async def compact(self, *, older_than: dt.timedelta) -> int:
        """Delete entries older than ``older_than``; clients whose offsets point before
        them get 409 must-refetch. Returns how many rows were deleted."""
        t = shape_log
        async with self.database.writer() as session:
            cutoff = dt.datetime.now(dt.UTC) - older_than
            boundary = await session.scalar(
                select(func.max(t.c.position)).where(t.c.created_at < cutoff)
            )
            if boundary is None:
                return 0
            result = await session.execute(delete(t).where(t.c.position <= boundary))
            await session.execute(
                sync_state.update()
                .where(sync_state.c.name == COMPACTED_BELOW)
                .values(value=int(boundary) + 1)
            )
        # The next request reads the state (and answers 409 to an offset compacted away).
        # Another process's compaction is seen at the next read; until then a client is
        # answered from this process's commits after its offset: still every change.
        self._states.clear()
        return int(getattr(result, "rowcount", 0) or 0)
