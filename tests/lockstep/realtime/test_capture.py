"""Publications made in write transactions, on SQLite and PostgreSQL: sent iff the
transaction commits, offsets gap-free and in commit order, kept in the database; broadcasts
of every write form."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, text, update

from lockstep import Settings, bulk_insert
from lockstep.db import Database
from lockstep.exceptions import ConfigurationError
from lockstep.realtime import Broadcast, Credentials, Namespace, Realtime, RowEvent
from lockstep.realtime.protocol import Publication
from lockstep.realtime.revisions import ensure_realtime_tables

from ..conftest import Base, Folder, Item


async def nobody(_request: Any) -> Credentials:
    return Credentials("")


def item_data(event: RowEvent) -> Any:
    row = event.row or {}
    return {"op": event.op, "key": event.key, "title": row.get("title"), "count": event.count}


@pytest.fixture
async def realtime(database: Database, settings: Settings) -> AsyncIterator[Realtime]:
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(ensure_realtime_tables)
    server = Realtime(
        settings,
        database,
        authenticate=nobody,
        namespaces=[Namespace("room"), Namespace("folder"), Namespace("live", history=False)],
        broadcasts=[
            Broadcast(Item.__table__, "folder:{folder_id}", data=item_data, columns=["title"])  # type: ignore[arg-type]
        ],
    )
    server.sent: list[Publication] = []  # type: ignore[attr-defined]
    server.hub.submit = server.sent.extend  # type: ignore[assignment,attr-defined]
    async with server.lifespan():
        yield server


async def rolled_back(database: Database, server: Realtime, channel: str) -> None:
    with pytest.raises(RuntimeError):  # noqa: PT012 - the raise is what rolls it back
        async with database.writer() as session:
            server.publish(session, channel, {"n": "never"})
            raise RuntimeError


def sent(server: Realtime, channel: str) -> list[tuple[int, Any]]:
    return [(p.offset, orjson.loads(p.data)) for p in server.sent if p.channel == channel]  # type: ignore[attr-defined]


async def test_sent_after_commit_in_order_never_after_rollback(
    database: Database, realtime: Realtime
) -> None:
    async with database.writer() as session:
        realtime.publish(session, "room:1", {"n": 1})
        realtime.publish(session, "live:1", {"v": 1})
        realtime.publish(session, "room:1", {"n": 2})
        assert realtime.sent == []  # type: ignore[attr-defined]
    await rolled_back(database, realtime, "room:1")
    async with database.writer() as session:
        realtime.publish(session, "room:1", {"n": 3})
        async with session.begin_nested() as savepoint:
            realtime.publish(session, "room:1", {"n": "rolled back savepoint"})
            await savepoint.rollback()
        async with session.begin_nested():
            realtime.publish(session, "room:1", {"n": 4})
    assert sent(realtime, "room:1") == [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3}), (4, {"n": 4})]
    assert sent(realtime, "live:1") == [(0, {"v": 1})]  # volatile: no offset, no history
    epoch, top, kept = await realtime.stream("room:1", 0)
    assert (top, [orjson.loads(p.data)["n"] for p in kept]) == (4, [1, 2, 3, 4])
    assert epoch


async def test_concurrent_writers_get_gap_free_offsets(
    database: Database, realtime: Realtime
) -> None:
    async def write(n: int) -> None:
        try:
            async with database.writer() as session:
                realtime.publish(session, "room:busy", {"n": n})
                if n % 5 == 0:
                    raise RuntimeError("rolled back")
        except RuntimeError:
            pass

    await asyncio.gather(*(write(n) for n in range(1, 21)))
    offsets = [o for o, _ in sent(realtime, "room:busy")]
    assert sorted(offsets) == list(range(1, 17))  # 4 of 20 rolled back, no holes
    _, top, kept = await realtime.stream("room:busy", 0)
    assert [p.offset for p in kept] == list(range(1, 17))
    assert top == 16


async def test_undeclared_namespaces_are_refused(database: Database, realtime: Realtime) -> None:
    with pytest.raises(ConfigurationError, match="nowhere"):
        async with database.writer() as session:
            realtime.publish(session, "nowhere:1", {})


async def test_broadcasts_of_every_write_form(database: Database, realtime: Realtime) -> None:
    async with database.writer() as session:
        session.add_all([Folder(id=1, org_id=1), Folder(id=2, org_id=1)])
        session.add(Item(id=10, org_id=1, folder_id=1, title="a"))
    assert sent(realtime, "folder:1") == [
        (1, {"op": "insert", "key": ["10"], "title": "a", "count": None})
    ]
    async with database.writer() as session:
        item = await session.get(Item, 10)
        assert item is not None
        item.folder_id = 2  # moves: both folders hear of it
        item.title = "b"
    assert sent(realtime, "folder:1")[-1][1]["op"] == "update"
    assert sent(realtime, "folder:2")[-1][1] == {
        "op": "update",
        "key": ["10"],
        "title": "b",
        "count": None,
    }
    async with database.writer() as session:  # rows it does not name: read before it runs
        await session.execute(update(Item).where(Item.folder_id == 2).values(title="c"))
    assert sent(realtime, "folder:2")[-1][1] == {
        "op": "update",
        "key": None,
        "title": None,
        "count": None,
    }
    async with database.writer() as session:  # text(): read again at commit
        await session.execute(insert(Item).values(id=11, org_id=1, folder_id=1, title="d"))
        await session.execute(text("UPDATE items SET title = 'e'"))
    assert [d["op"] for _, d in sent(realtime, "folder:1")[-2:]] == ["insert", "update"]
    assert sent(realtime, "folder:2")[-1][1]["key"] is None
    before = len(realtime.sent)  # type: ignore[attr-defined]
    async with database.writer() as session:  # a bulk import: one event per channel
        rows = [
            {"id": 100 + i, "org_id": 1, "folder_id": 1 + i % 2, "title": "x"} for i in range(1500)
        ]
        await bulk_insert(session, Item.__table__, rows)  # type: ignore[arg-type]
    bulk = realtime.sent[before:]  # type: ignore[attr-defined]
    assert sorted(p.channel for p in bulk) == ["folder:1", "folder:2"]
    assert {orjson.loads(p.data)["count"] for p in bulk} == {1500}


async def test_history_is_trimmed_to_its_size(database: Database, settings: Settings) -> None:
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(ensure_realtime_tables)
    small = settings.model_copy(update={"realtime_history_size": 3})
    server = Realtime(small, database, authenticate=nobody, namespaces=[Namespace("room")])
    for n in range(10):
        async with database.writer() as session:
            server.publish(session, "room:t", {"n": n})
    assert await server.trim() == 7
    _, top, kept = await server.stream("room:t", 0)
    assert (top, [p.offset for p in kept]) == (10, [8, 9, 10])
