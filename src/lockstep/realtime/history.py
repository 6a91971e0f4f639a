"""Durable channel history in the database: offsets taken inside the writing transaction.

Schema (the live definition of the latest revision of ``REALTIME_TABLES``, whose frozen DDL
an application's migration applies; see :mod:`.revisions`)::

    lockstep_channels(name, epoch, top, updated_at)          one row per channel with history
    lockstep_publications(channel, seq, data, created_at)    the kept publications

Guarantees:

* :func:`append` runs on the writer's connection in the transaction (``Phase.LOG``). Taking
  the offsets is an upsert of the channel's row, so two transactions publishing to one
  channel are serialized from that point to their commit: offsets are gap-free (a rollback
  takes its offsets back) and in commit order, across processes.
* A channel row is created with a fresh epoch; history is only lost by :func:`trim` (old or
  surplus rows, epoch kept: positions before the kept history are refused) or when the row
  itself goes (then a new row, a new epoch, and every old position is refused).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.realtime.protocol import Publication

metadata = MetaData()

channels_table = Table(
    "lockstep_channels",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("epoch", String(16), nullable=False),
    Column("top", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

publications_table = Table(
    "lockstep_publications",
    metadata,
    Column("channel", String(255), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("data", Text, nullable=False),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        index=True,
    ),
)

_TAKE = {
    "sqlite": text(
        "INSERT INTO lockstep_channels (name, epoch, top, updated_at) "
        "VALUES (:name, :epoch, :n, CURRENT_TIMESTAMP) "
        "ON CONFLICT (name) DO UPDATE SET top = top + excluded.top, "
        "updated_at = excluded.updated_at RETURNING epoch, top"
    ),
    "postgresql": text(
        "INSERT INTO lockstep_channels (name, epoch, top, updated_at) "
        "VALUES (:name, :epoch, :n, now()) "
        "ON CONFLICT (name) DO UPDATE SET top = lockstep_channels.top + EXCLUDED.top, "
        "updated_at = EXCLUDED.updated_at RETURNING epoch, top"
    ),
}
_KEEP = text("INSERT INTO lockstep_publications (channel, seq, data) VALUES (:c, :s, :d)")


def new_epoch() -> str:
    return uuid.uuid4().hex[:8]


def append(
    connection: Connection, batch: Sequence[tuple[str, bytes]], committed_at: float
) -> list[Publication]:
    """Give ``batch`` (channel, JSON data) offsets and keep it, in the transaction of
    ``connection``; returns the publications in ``batch`` order. Channels are taken in
    name order, so two transactions never wait for each other in a cycle."""
    counts: dict[str, int] = {}
    for channel, _ in batch:
        counts[channel] = counts.get(channel, 0) + 1
    take = _TAKE["postgresql" if connection.dialect.name == "postgresql" else "sqlite"]
    next_offset: dict[str, tuple[str, int]] = {}
    for channel in sorted(counts):
        n = counts[channel]
        row = connection.execute(take, {"name": channel, "epoch": new_epoch(), "n": n}).one()
        next_offset[channel] = (str(row.epoch), int(row.top) - n + 1)
    out = []
    for channel, data in batch:
        epoch, offset = next_offset[channel]
        next_offset[channel] = (epoch, offset + 1)
        out.append(Publication(channel, data, offset, epoch, committed_at))
    connection.execute(_KEEP, [{"c": p.channel, "s": p.offset, "d": p.data.decode()} for p in out])
    return out


async def tops(session: AsyncSession, names: Iterable[str]) -> dict[str, tuple[str, int]]:
    """``{channel: (epoch, top)}`` for the channels of ``names`` that have history."""
    wanted = sorted(set(names))
    found: dict[str, tuple[str, int]] = {}
    c = channels_table.c
    for start in range(0, len(wanted), 500):
        rows = await session.execute(
            select(c.name, c.epoch, c.top).where(c.name.in_(wanted[start : start + 500]))
        )
        for name, epoch, top in rows:
            found[str(name)] = (str(epoch), int(top))
    return found


async def since(
    session: AsyncSession, channel: str, after: int, epoch: str, limit: int
) -> list[Publication]:
    """The kept publications of ``channel`` after offset ``after``, ascending, at most
    ``limit`` (stamped with ``epoch``)."""
    p = publications_table.c
    rows = await session.execute(
        select(p.seq, p.data)
        .where(and_(p.channel == channel, p.seq > after))
        .order_by(p.seq)
        .limit(limit)
    )
    return [Publication(channel, data.encode(), int(seq), epoch) for seq, data in rows]


async def latest(session: AsyncSession, channel: str, epoch: str, limit: int) -> list[Publication]:
    """The newest ``limit`` kept publications of ``channel``, newest first."""
    p = publications_table.c
    rows = await session.execute(
        select(p.seq, p.data).where(p.channel == channel).order_by(p.seq.desc()).limit(limit)
    )
    return [Publication(channel, data.encode(), int(seq), epoch) for seq, data in rows]


async def trim(session: AsyncSession, *, size: int, older_than: dt.timedelta) -> int:
    """Delete publications beyond the newest ``size`` of each channel and those older than
    ``older_than``; returns how many were deleted."""
    p, c = publications_table.c, channels_table.c
    cutoff = dt.datetime.now(dt.UTC) - older_than
    aged = await session.execute(delete(publications_table).where(p.created_at < cutoff))
    surplus = await session.execute(
        delete(publications_table).where(
            p.seq <= select(c.top - size).where(c.name == p.channel).scalar_subquery()
        )
    )
    return int(getattr(aged, "rowcount", 0) or 0) + int(getattr(surplus, "rowcount", 0) or 0)


def positions(found: Mapping[str, tuple[str, int]], channel: str) -> tuple[str, int]:
    """A channel's ``(epoch, top)``; a channel without a row yet is at ``("", 0)``."""
    return found.get(channel, ("", 0))
