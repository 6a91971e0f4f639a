"""Waiters woken by this process's commits answer from what the commits logged, and that
is exactly what reading the log answers; anything not committed here is read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, insert, text, update

from lockstep import Database, Lockstep, Settings, Tracking
from lockstep.changes import ensure_change_log
from lockstep.offline import Offline, Shape, ensure_offline_tables
from lockstep.offline.reader import LogState, ShapeLog

metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org", Integer, nullable=False),
    Column("body", String(40), nullable=False),
)
others = Table(
    "others",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org", Integer, nullable=False),
)


@pytest.fixture
async def offline(sqlite_url: str) -> AsyncIterator[Offline]:
    settings = Settings(database_url=sqlite_url, env="test")
    db = Database(settings)
    async with db.writer_engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.run_sync(ensure_change_log)
        await connection.run_sync(ensure_offline_tables)
    runtime = Lockstep(settings, db, Tracking(metadata, scopes=["org"]))
    shapes = [Shape(notes, scope=lambda r: {"org": 1}), Shape(others)]
    made = Offline(db, runtime.changes, shapes=shapes)
    try:
        yield made
    finally:
        await made.stop()
        await db.dispose()


async def test_commits_here_answer_as_the_log_does(offline: Offline) -> None:
    db, log = offline.database, offline.log
    start, _ = await log.entries("notes", 0, 0)
    async with db.writer() as session:
        await session.execute(insert(notes), [{"id": i, "org": 1, "body": "a"} for i in (1, 2)])
    async with db.writer() as session:
        await session.execute(insert(others).values(id=1, org=1))  # another table's position
    async with db.writer() as session:
        await session.execute(update(notes).where(notes.c.id == 1).values(body="b"))
        await session.execute(delete(notes).where(notes.c.id == 2))
    read_state, read = await log.entries("notes", start.head, start.head + 10)
    kept = log.recent("notes", start.head, start.head + 10, start)
    assert kept is not None
    state, entries = kept
    assert entries == read
    assert [(e.key, e.before is None, e.after is None) for e in entries] == [
        ('["1"]', True, False),
        ('["2"]', True, False),
        ('["1"]', False, False),
        ('["2"]', False, True),
    ]
    assert state == read_state
    # A range capped below the head, and one with nothing of this table.
    capped = log.recent("notes", start.head, start.head + 1, start)
    assert capped is not None
    assert capped[1] == read[:2]
    other = log.recent("others", start.head + 1, start.head + 3, read_state)
    assert other is not None
    assert [e.key for e in other[1]] == ['["1"]']


async def test_a_rotation_is_read_for_the_tables_new_epoch(offline: Offline) -> None:
    db, log = offline.database, offline.log
    start, _ = await log.entries("notes", 0, 0)
    async with db.writer() as session:
        await session.execute(text("UPDATE notes SET body = 'x'"))  # not nameable row by row
    assert log.recent("notes", start.head, start.head + 10, start) is None
    state, entries = await log.entries("notes", start.head, start.head + 10)
    assert [e.key for e in entries] == [None]
    assert state.epoch == start.head + 1  # what the clients' new handle names


async def test_without_a_state_given_the_last_read_one_stands(offline: Offline) -> None:
    db, log = offline.database, offline.log
    assert log.recent("notes", 0, 10) is None  # nothing read yet: no state to answer with
    start = await log.state("notes")
    for n in (1, 2):
        async with db.writer() as session:
            await session.execute(insert(notes).values(id=n, org=1, body="a"))
    # Asked after the second commit only: the state read before the first still stands.
    kept = log.recent("notes", start.head + 1, start.head + 10)
    assert kept is not None
    assert kept == await log.entries("notes", start.head + 1, start.head + 10)
    assert [e.key for e in kept[1]] == ['["2"]']
    # A rotation between the last read state and the offset moved the epoch: read.
    before = await log.state("notes")
    async with db.writer() as session:
        await session.execute(text("UPDATE notes SET body = 'x'"))
    async with db.writer() as session:
        await session.execute(insert(notes).values(id=3, org=1, body="a"))
    assert log.recent("notes", before.head + 1, before.head + 10) is None
    state, _ = await log.entries("notes", before.head + 1, before.head + 10)
    assert state.epoch == before.head + 1


async def test_positions_not_committed_here_are_read(offline: Offline) -> None:
    db, log = offline.database, offline.log
    state, _ = await log.entries("notes", 0, 0)
    assert log.recent("notes", state.head, state.head + 10, state) is None  # nothing moved
    async with db.writer() as session:
        await session.execute(insert(notes).values(id=1, org=1, body="a"))
    # Another process's commit: the head moves with no entries known here.
    async with db.writer_engine.begin() as connection:
        await connection.execute(
            text("UPDATE lockstep_sync_state SET value = value + 1 WHERE name = 'shape.position'")
        )
    waited = await asyncio.wait_for(log.wait_beyond(state.head + 1, within=5), 10)
    assert waited == state.head + 2  # seen by the poll
    assert log.recent("notes", state.head, state.head + 10, state) is None  # a gap: read
    kept = log.recent("notes", state.head, state.head + 1, state)
    assert kept is not None
    assert len(kept[1]) == 1


def test_the_memory_is_bounded_and_big_commits_are_not_kept() -> None:
    log = ShapeLog(None, poll_interval=1)  # type: ignore[arg-type]  # no reads here
    state = LogState("g", 0, 0, 0)
    log.advance(1, [])
    log.advance(2, None)  # known to exist, not kept
    assert log.recent("t", 0, 1, state) == (LogState("g", 2, 0, 0), [])
    assert log.recent("t", 0, 2, state) is None
    for position in range(3, 3 + 5_000):
        log.advance(position, [])
    later = LogState("g", 4_000, 0, 0)  # a state read at the offsets asked after
    assert log.recent("t", 2, 4_000, later) is None  # the oldest were dropped
    assert log.recent("t", 4_000, 5_000, later) is not None
