"""Reading the change log in commit order from an opaque cursor, and compacting it.

SQLite has one writer at a time, so log ids are in commit order and a cursor is the last id
read. PostgreSQL hands out ids when rows are inserted, not when their transactions commit: a
transaction holding id 5 can commit after id 6 was read, and a "last id" cursor would skip it
forever. There the cursor is ``(floor, delivered)``: every transaction id below ``floor`` is
finished and fully read (``floor`` is the snapshot's ``xmin``), and ``delivered`` lists the
rows at or above it already read. A row is therefore read exactly once, however late its
transaction commits; the price is a cursor that grows while one transaction stays open.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, select, text, tuple_, update

from lockstep.changes.hub import ChangeHub
from lockstep.changes.log import COMPACTED_BELOW, GENERATION, changes_table, decode_row
from lockstep.db import Database
from lockstep.exceptions import CursorExpiredError
from lockstep.schema import meta_table
from lockstep.types import ChangeSet

_XMIN = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the feed. ``position`` is the last id (SQLite) or the floor txid (PG)."""

    generation: str
    position: int
    delivered: tuple[tuple[int, int], ...] = field(default=())

    def encode(self) -> str:
        raw = orjson.dumps([self.generation, self.position, [list(d) for d in self.delivered]])
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            generation, position, delivered = orjson.loads(raw)
            return cls(
                str(generation), int(position), tuple((int(t), int(i)) for t, i in delivered)
            )
        except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise CursorExpiredError("malformed change-feed cursor; start again from head") from exc


class ChangeFeed:
    """Committed change sets after a cursor; never skips one, never repeats one."""

    def __init__(self, database: Database, hub: ChangeHub | None = None) -> None:
        self.database = database
        self.hub = hub
        self._generation: str | None = None

    async def generation(self) -> str:
        if self._generation is None:
            async with self.database.reader() as session:
                value = await session.scalar(
                    select(meta_table.c.value).where(meta_table.c.name == GENERATION)
                )
            if value is None:
                raise CursorExpiredError("the change log is not installed (run the migrations)")
            self._generation = value
        return self._generation

    async def head(self) -> Cursor:
        """The position after everything committed so far."""
        _, cursor = await self.since(None, limit=None, skip_rows=True)
        return cursor

    async def position(self, session: Any) -> Cursor:
        """The position of ``session``'s snapshot: every change set its reads see is before
        the cursor, every other one after it — ``since(cursor)`` later returns exactly the
        changes those reads missed. Read it in the session whose figures it should date: on
        PostgreSQL that session must hold one snapshot (``isolation_level="REPEATABLE
        READ"`` on its connection, asked for before its first statement); a SQLite read
        session is one transaction already.
        """
        generation = await self.generation()
        t = changes_table
        if self.database.is_sqlite:
            top = await session.scalar(select(func.max(t.c.id)))
            return Cursor(generation, int(top or 0))
        xmin = int(await session.scalar(_XMIN))
        rows = (
            await session.execute(
                select(t.c.txid, t.c.id).where(t.c.txid >= xmin).order_by(t.c.txid, t.c.id)
            )
        ).all()
        return Cursor(generation, xmin, tuple((int(r.txid), int(r.id)) for r in rows))

    async def since(
        self, cursor: Cursor | str | None, *, limit: int | None = 1000, skip_rows: bool = False
    ) -> tuple[list[ChangeSet], Cursor]:
        """Change sets committed after ``cursor`` (None: from the oldest kept), in order.

        Raises :class:`CursorExpiredError` when the cursor is from another database or older
        than the retained history.
        """
        if isinstance(cursor, str):
            cursor = Cursor.decode(cursor)
        generation = await self.generation()
        async with self.database.reader() as session:
            compacted = int(
                await session.scalar(
                    select(meta_table.c.value).where(meta_table.c.name == COMPACTED_BELOW)
                )
                or 0
            )
            if cursor is not None and (
                cursor.generation != generation or self._before_history(cursor, compacted)
            ):
                raise CursorExpiredError("change-feed cursor is older than the kept history")
            if self.database.is_sqlite:
                return await self._since_sqlite(session, generation, cursor, limit, skip_rows)
            return await self._since_postgres(session, generation, cursor, limit, skip_rows)

    def _before_history(self, cursor: Cursor, compacted_below: int) -> bool:
        if self.database.is_sqlite:  # position = last id read; ids < compacted_below are gone
            return cursor.position + 1 < compacted_below
        # position = floor txid; rows with txid < compacted_below are gone, read or not.
        return cursor.position < compacted_below

    async def _since_sqlite(
        self,
        session: Any,
        generation: str,
        cursor: Cursor | None,
        limit: int | None,
        skip_rows: bool,
    ) -> tuple[list[ChangeSet], Cursor]:
        last = cursor.position if cursor else 0
        if skip_rows:
            top = await session.scalar(select(func.max(changes_table.c.id)))
            return [], Cursor(generation, max(last, top or 0))
        stmt = select(changes_table).where(changes_table.c.id > last).order_by(changes_table.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = (await session.execute(stmt)).all()
        sets = [decode_row(r.id, r.txid, r.payload) for r in rows]
        return sets, Cursor(generation, sets[-1].id if sets else last)

    async def _since_postgres(
        self,
        session: Any,
        generation: str,
        cursor: Cursor | None,
        limit: int | None,
        skip_rows: bool,
    ) -> tuple[list[ChangeSet], Cursor]:
        # xmin first: every transaction below it is finished, so the rows query (a later
        # snapshot) sees all of their rows.
        xmin = int(await session.scalar(_XMIN))
        floor = cursor.position if cursor else 0
        delivered = set(cursor.delivered) if cursor else set()
        t = changes_table
        stmt = select(t.c.id, t.c.txid, t.c.payload if not skip_rows else t.c.id.label("p"))
        stmt = stmt.where(t.c.txid >= floor)
        if delivered:
            stmt = stmt.where(tuple_(t.c.txid, t.c.id).not_in(list(delivered)))
        stmt = stmt.order_by(t.c.txid, t.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = (await session.execute(stmt)).all()
        truncated = limit is not None and len(rows) == limit
        new_floor = min(xmin, rows[-1].txid) if truncated else max(xmin, floor)
        seen = delivered | {(r.txid, r.id) for r in rows}
        kept = tuple(sorted(d for d in seen if d[0] >= new_floor))
        sets = [] if skip_rows else [decode_row(r.id, r.txid, r.payload) for r in rows]
        return sets, Cursor(generation, new_floor, kept)

    async def follow(
        self,
        cursor: Cursor | str | None,
        *,
        poll_interval: float = 1.0,
    ) -> AsyncIterator[tuple[ChangeSet, Cursor]]:
        """Every change set after ``cursor``, forever: woken by this process's commits, and
        polling every ``poll_interval`` seconds for other processes'."""
        position = Cursor.decode(cursor) if isinstance(cursor, str) else cursor
        while True:
            woken = self.hub.next_publish() if self.hub is not None else None
            sets, next_position = await self.since(position)
            for changeset in sets:
                yield changeset, next_position
            position = next_position
            if not sets:
                if woken is not None:
                    await ChangeHub.wait(woken, within=poll_interval)
                else:
                    await asyncio.sleep(poll_interval)

    async def compact(self, *, older_than: dt.timedelta) -> int:
        """Delete log rows older than ``older_than`` (on PostgreSQL also only rows below every
        open transaction). Cursors pointing before them get :class:`CursorExpiredError`.
        Returns how many rows were deleted."""
        t = changes_table
        seconds = int(older_than.total_seconds())
        async with self.database.writer() as session:
            if self.database.is_sqlite:
                old = t.c.created_at < func.datetime("now", f"{-seconds:+d} seconds")
                boundary = await session.scalar(select(func.max(t.c.id)).where(old))
                column = t.c.id
            else:
                xmin = int(await session.scalar(_XMIN))
                old = t.c.created_at < func.now() - older_than
                boundary = await session.scalar(
                    select(func.max(t.c.txid)).where(and_(old, t.c.txid < xmin))
                )
                column = t.c.txid
            if boundary is None:
                return 0
            result = await session.execute(delete(t).where(column <= boundary))
            await session.execute(
                update(meta_table)
                .where(meta_table.c.name == COMPACTED_BELOW)
                .values(value=str(boundary + 1))
            )
            return int(getattr(result, "rowcount", 0) or 0)
