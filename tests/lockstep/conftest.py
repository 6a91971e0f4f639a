"""Shared by lockstep tests: a small schema with scopes, cascades and a many-to-many table,
with the change feed (and an in-memory cache) installed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from lockstep.cache import (
    Cache,
    MemoryStampStore,
    MirroredStampStore,
    RedisStampStore,
    RedisValueStore,
)
from lockstep.changes import Changes, Tracking, ensure_change_log
from lockstep.db import Database
from lockstep.types import ChangeSet


class Base(DeclarativeBase):
    metadata = MetaData()


item_tags = Table(
    "item_tags",
    Base.metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
)


class Folder(Base):
    __tablename__ = "folders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(50), default="")


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(50))


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(50), default="")
    tags: Mapped[list[Tag]] = relationship(secondary=item_tags, lazy="selectin")


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


@dataclass
class Feed:
    db: Database
    changes: Changes
    published: list[ChangeSet]


@pytest.fixture
async def feed(database: Database) -> Feed:
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(ensure_change_log)
    tracking = Tracking(Base.metadata, scopes=["org_id", "folder_id"], exclude=["audit_entries"])
    changes = Changes(database, tracking)
    published: list[ChangeSet] = []

    async def listen(changeset: ChangeSet) -> None:
        published.append(changeset)

    changes.hub.subscribe(listen)
    return Feed(database, changes, published)


@dataclass
class Cached:
    feed: Feed
    cache: Cache


@pytest.fixture(params=[pytest.param("memory", id="memory"), pytest.param("redis", id="redis")])
async def cached(feed: Feed, request: pytest.FixtureRequest) -> AsyncIterator[Cached]:
    """A cache on the feed: in-process stamps, or Redis stamps + L2 behind a live mirror."""
    if request.param == "memory":
        cache = Cache(MemoryStampStore(), tracking=feed.changes.tracking, namespace="test")
        feed.changes.hub.subscribe(cache.invalidate)
        yield Cached(feed, cache)
        return
    redis = Redis.from_url(request.getfixturevalue("redis_url"))
    # A generous call timeout: these tests are about exactness, and on a loaded 2-core CI
    # machine 50 concurrent stamp reads can take longer than the 0.5 s default, which turns
    # the cache into its fail-open bypass (every caller computes). Timeouts have their own
    # tests (test_redis_faults.py).
    remote = RedisStampStore(redis, prefix="test", timeout=5.0)
    mirror = MirroredStampStore(remote)
    cache = Cache(
        mirror, l2=RedisValueStore(redis, remote), tracking=feed.changes.tracking, namespace="test"
    )
    mirror.on_flush = cache.clear_local
    await mirror.start()
    feed.changes.hub.subscribe(cache.invalidate)
    yield Cached(feed, cache)
    await mirror.stop()
    await redis.aclose()
