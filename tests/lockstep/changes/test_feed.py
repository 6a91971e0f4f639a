"""Reading the log from a cursor: in order, nothing skipped, nothing repeated."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select, update

from lockstep.changes import Cursor
from lockstep.changes.log import COMPACTED_BELOW, meta_table, write_changeset
from lockstep.exceptions import CursorExpiredError
from lockstep.types import Change

from ..conftest import Feed, Folder


async def _write(feed: Feed, folder_id: int) -> None:
    async with feed.db.writer() as s:
        s.add(Folder(id=folder_id, org_id=1))


def _keys(changesets: list) -> list[str]:  # type: ignore[type-arg]
    return [c.key[0] for cs in changesets for c in cs.changes]


async def test_since_pages_through_everything_in_order(feed: Feed) -> None:
    for i in range(1, 8):
        await _write(feed, i)
    seen: list[str] = []
    cursor: Cursor | str | None = None
    while True:
        batch, cursor = await feed.changes.feed.since(cursor, limit=3)
        if not batch:
            break
        seen += _keys(batch)
        cursor = cursor.encode()  # tokens survive a round trip through a client
    assert seen == [str(i) for i in range(1, 8)]
    assert (await feed.changes.feed.since(cursor))[0] == []


async def test_head_skips_history_and_sees_what_follows(feed: Feed) -> None:
    await _write(feed, 1)
    head = await feed.changes.feed.head()
    await _write(feed, 2)
    batch, _ = await feed.changes.feed.since(head)
    assert _keys(batch) == ["2"]


@pytest.mark.postgres
async def test_a_transaction_committing_late_is_not_skipped(feed: Feed) -> None:
    """T1 takes its log row first but commits after T2: a reader between the two commits
    must still receive T1 later (an id-based cursor would skip it forever)."""
    if feed.db.is_sqlite:
        pytest.skip("SQLite has one writer: commit order is id order")
    t1_logged = asyncio.Event()
    release_t1 = asyncio.Event()

    async def t1() -> None:
        async with feed.db.writer() as s:
            s.add(Folder(id=10, org_id=1))
            await s.flush()
            # Write the log row exactly as before_commit does, then stall before COMMIT.
            change = Change(table="folders", op="insert", key=("10",))
            await s.run_sync(lambda sync: write_changeset(sync.connection(), [change]))
            t1_logged.set()
            await release_t1.wait()

    start = await feed.changes.feed.head()
    task = asyncio.create_task(t1())
    await t1_logged.wait()
    await _write(feed, 2)  # T2 commits while T1 is still open
    first, cursor = await feed.changes.feed.since(start)
    assert "2" in _keys(first)
    assert "10" not in _keys(first)
    release_t1.set()
    await task
    second, cursor = await feed.changes.feed.since(cursor)
    # Two rows share T1's txid (ours and the capture's own at commit): both arrive, once.
    assert _keys(second) == ["10", "10"]
    assert len({cs.id for cs in second}) == 2
    third, _ = await feed.changes.feed.since(cursor)
    assert third == []


async def test_malformed_and_foreign_cursors_are_expired(feed: Feed) -> None:
    with pytest.raises(CursorExpiredError):
        await feed.changes.feed.since("not-a-cursor")
    head = await feed.changes.feed.head()
    foreign = Cursor("another-db", head.position, head.delivered)
    with pytest.raises(CursorExpiredError):
        await feed.changes.feed.since(foreign)


async def test_compaction_expires_old_cursors_only(feed: Feed) -> None:
    start = await feed.changes.feed.head()
    await _write(feed, 1)
    await _write(feed, 2)
    middle = await feed.changes.feed.head()
    # Everything so far is "old": compact with a negative age bound.
    deleted = await feed.changes.feed.compact(older_than=dt.timedelta(seconds=-3600))
    assert deleted == 2
    with pytest.raises(CursorExpiredError):
        await feed.changes.feed.since(start)
    await _write(feed, 3)
    batch, _ = await feed.changes.feed.since(middle)
    assert _keys(batch) == ["3"]
    async with feed.db.reader() as s:
        from sqlalchemy import select

        below = await s.scalar(
            select(meta_table.c.value).where(meta_table.c.name == COMPACTED_BELOW)
        )
    assert int(below or 0) > 0


async def test_follow_wakes_on_a_local_commit(feed: Feed) -> None:
    head = await feed.changes.feed.head()
    follower = feed.changes.feed.follow(head, poll_interval=30)
    next_change = asyncio.ensure_future(follower.__anext__())
    await _write(feed, 42)
    changeset, _ = await asyncio.wait_for(next_change, timeout=10)
    assert _keys([changeset]) == ["42"]
    await follower.aclose()


async def test_update_statement_is_logged_once_per_commit(feed: Feed) -> None:
    await _write(feed, 1)
    head = await feed.changes.feed.head()
    async with feed.db.writer() as s:
        await s.execute(update(Folder).values(name="x"))
        await s.execute(update(Folder).values(name="y"))
    batch, _ = await feed.changes.feed.since(head)
    assert len(batch) == 1
    assert len(batch[0].changes) == 2


async def test_position_dates_a_snapshot_exactly(feed: Feed) -> None:
    """``position(session)`` read in one snapshot: what the snapshot saw is before it, what it
    did not see — a commit after the snapshot was taken — comes from ``since``."""
    await _write(feed, 1)
    async with feed.db.reader() as session:
        if not feed.db.is_sqlite:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        position = await feed.changes.feed.position(session)
        await _write(feed, 2)  # committed while the snapshot is open: not in it
        seen = await session.scalar(select(func.count()).select_from(Folder))
        assert await feed.changes.feed.position(session) == position  # the same snapshot
    assert seen == 1
    batch, _ = await feed.changes.feed.since(position.encode())
    assert _keys(batch) == ["2"]


@pytest.mark.postgres
async def test_position_delivers_a_transaction_open_during_the_snapshot(feed: Feed) -> None:
    """A transaction that took its log row before the snapshot but committed after it is
    not in the snapshot, so ``since(position)`` delivers it."""
    if feed.db.is_sqlite:
        pytest.skip("SQLite has one writer: commit order is id order")
    logged, release = asyncio.Event(), asyncio.Event()

    async def late() -> None:
        async with feed.db.writer() as s:
            s.add(Folder(id=10, org_id=1))
            await s.flush()
            change = Change(table="folders", op="insert", key=("10",))
            await s.run_sync(lambda sync: write_changeset(sync.connection(), [change]))
            logged.set()
            await release.wait()

    task = asyncio.create_task(late())
    await logged.wait()
    await _write(feed, 2)
    async with feed.db.reader() as session:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        position = await feed.changes.feed.position(session)
        ids = set(await session.scalars(select(Folder.id)))
    assert ids == {2}
    release.set()
    await task
    batch, _ = await feed.changes.feed.since(position)
    assert _keys(batch) == ["10", "10"]
