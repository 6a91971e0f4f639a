"""``@cache.cached``: signatures kept, declared types returned on hits (requirement 15)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy import select

from lockstep.cache import Cache, MemoryStampStore, RedisStampStore, RedisValueStore, Row, Scope
from lockstep.exceptions import ConfigurationError

from ..conftest import Feed, Folder, Item


class FolderOut(BaseModel):
    id: int
    name: str


@dataclass
class ItemOut:
    id: int
    title: str


async def _seed(feed: Feed) -> None:
    async with feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1, name="one"))
        s.add(Item(id=7, org_id=1, folder_id=1, title="seven"))


def _functions(cache: Cache, feed: Feed, calls: list[str]):  # type: ignore[no-untyped-def]
    @cache.cached(depends=lambda folder_id: [Row("folders", folder_id)])
    async def folder(folder_id: int) -> FolderOut | None:
        calls.append("folder")
        async with feed.db.reader() as s:
            row = await s.get(Folder, folder_id)
        return FolderOut(id=row.id, name=row.name) if row else None

    @cache.cached(depends=lambda folder_id: [Scope("items", folder_id=folder_id)])
    async def items(folder_id: int) -> list[ItemOut]:
        calls.append("items")
        async with feed.db.reader() as s:
            rows = (await s.scalars(select(Item).where(Item.folder_id == folder_id))).all()
        return [ItemOut(r.id, r.title) for r in rows]

    return folder, items


async def test_hits_return_the_declared_types_from_l2(feed: Feed, redis_url: str) -> None:
    await _seed(feed)
    redis = Redis.from_url(redis_url)
    stamps = RedisStampStore(redis, prefix="deco")
    writer_cache = Cache(stamps, l2=RedisValueStore(redis, stamps), tracking=feed.changes.tracking)
    reader_cache = Cache(stamps, l2=RedisValueStore(redis, stamps), tracking=feed.changes.tracking)
    feed.changes.hub.subscribe(writer_cache.invalidate)
    calls: list[str] = []
    folder_a, items_a = _functions(writer_cache, feed, calls)
    folder_b, items_b = _functions(reader_cache, feed, calls)
    assert await folder_a(1) == FolderOut(id=1, name="one")
    assert await items_a(1) == [ItemOut(7, "seven")]
    # Another process (its own empty L1) reads them back from Redis as the declared types.
    hit = await folder_b(1)
    assert isinstance(hit, FolderOut)
    listed = await items_b(1)
    assert isinstance(listed[0], ItemOut)
    assert calls == ["folder", "items"]
    assert await folder_b(99) is None  # None is cached like any value
    assert await folder_b(99) is None
    assert calls.count("folder") == 2
    await redis.aclose()


def test_signature_is_kept_and_annotation_required(feed: Feed) -> None:
    cache = Cache(MemoryStampStore(), tracking=feed.changes.tracking)
    folder, _ = _functions(cache, feed, [])
    assert list(inspect.signature(folder).parameters) == ["folder_id"]
    assert folder.__name__ == "folder"

    async def untyped(folder_id):  # type: ignore[no-untyped-def]
        return folder_id

    with pytest.raises(ConfigurationError, match="return annotation"):
        cache.cached(depends=lambda folder_id: [Row("folders", folder_id)])(untyped)
