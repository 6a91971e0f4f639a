"""The cache in scale-out mode: two "processes" (two Cache instances with their own L1 and
stamp mirror) share one real Redis and one database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from lockstep.cache import (
    Cache,
    CacheMetrics,
    MirroredStampStore,
    RedisStampStore,
    RedisValueStore,
    Row,
)
from lockstep.changes import consistency_scope

from ..conftest import Feed, Folder


@dataclass
class Node:
    cache: Cache
    mirror: MirroredStampStore
    computed: list[str]


@pytest.fixture
async def nodes(feed: Feed, redis_url: str) -> AsyncIterator[tuple[Node, Node]]:
    clients: list[Redis] = []
    made: list[Node] = []
    for _ in range(2):
        redis = Redis.from_url(redis_url)
        clients.append(redis)
        remote = RedisStampStore(redis, prefix="t", timeout=5.0)  # exactness, not timeouts
        metrics = CacheMetrics()
        mirror = MirroredStampStore(remote, metrics=metrics)
        cache = Cache(
            mirror,
            l2=RedisValueStore(redis, remote),
            tracking=feed.changes.tracking,
            metrics=metrics,
        )
        mirror.on_flush = cache.clear_local
        await mirror.start()
        made.append(Node(cache, mirror, []))
    # Only the first node's process writes; the change hub is per process.
    feed.changes.hub.subscribe(made[0].cache.invalidate)
    async with feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1, name="one"))
    yield made[0], made[1]
    for node in made:
        await node.mirror.stop()
    for redis in clients:
        await redis.aclose()


async def _name(feed: Feed, node: Node) -> str | None:
    async def compute() -> str | None:
        node.computed.append("x")
        async with feed.db.reader() as s:
            return await s.scalar(select(Folder.name).where(Folder.id == 1))

    return (await node.cache.get_or_compute("folder", 1, [Row("folders", 1)], compute)).value


async def _rename(feed: Feed, name: str) -> int:
    with consistency_scope() as holder:
        async with feed.db.writer() as s:
            folder = await s.get(Folder, 1)
            assert folder is not None
            folder.name = name
    assert holder.token is not None
    return holder.token


async def test_l2_is_shared_and_etags_agree(feed: Feed, nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    assert await _name(feed, a) == "one"
    assert await _name(feed, b) == "one"
    assert (len(a.computed), len(b.computed)) == (1, 0)  # b was served from Redis (L2)

    async def noop() -> None:
        return None

    ea = await a.cache.get_or_compute("folder", 1, [Row("folders", 1)], noop)
    eb = await b.cache.get_or_compute("folder", 1, [Row("folders", 1)], noop)
    assert ea.etag == eb.etag
    assert ea.status == eb.status == "hit"


async def test_read_with_the_writers_token_is_never_stale(
    feed: Feed, nodes: tuple[Node, Node]
) -> None:
    _, b = nodes
    assert await _name(feed, b) == "one"  # b's L1 and mirror now hold the old version
    # b's invalidation message has not been processed yet when the read arrives: hold it
    # back by pausing b's listener (its channel still buffers the message).
    b.mirror._live.clear()
    token = await _rename(feed, "uno")
    b.mirror._live.set()
    with consistency_scope(min_change=token):
        assert await _name(feed, b) == "uno"


async def test_a_missed_message_flushes_the_mirror_and_l1(
    feed: Feed, nodes: tuple[Node, Node]
) -> None:
    _, b = nodes
    assert await _name(feed, b) == "one"
    assert b.cache.l1_size == 1
    flushes = b.mirror.flushes
    last = b.mirror._last_seq or 0
    b.mirror.apply({"seq": last + 2, "change": 999, "keys": []})  # seq last+1 never arrived
    assert b.mirror.flushes == flushes + 1
    assert b.cache.l1_size == 0


async def test_invalidation_reaches_the_other_process(feed: Feed, nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    assert await _name(feed, b) == "one"
    received = b.mirror.received
    await _rename(feed, "uno")
    async with asyncio.timeout(10):
        await b.mirror.wait_received(received + 1)
    assert await _name(feed, b) == "uno"
    assert await _name(feed, a) == "uno"
    # Requirement 18: the commit-to-applied lag is measured in the receiving process.
    lag = b.cache.metrics.invalidation_lag.collect()[0].samples
    assert any(s.name.endswith("_count") and s.value >= 1 for s in lag)


async def test_a_bump_without_a_change_id_marks_nothing_and_names_no_change(
    redis_url: str,
) -> None:
    redis = Redis.from_url(redis_url)
    store = RedisStampStore(redis, prefix="announce")
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(store.channel)
        before = await store.read(["k"])
        assert await store.bump({"k"})  # announced before COMMIT
        assert (await store.read(["k"])) != before
        assert [key async for key in redis.scan_iter(match="*:applied:*")] == []
        await store.bump({"k"}, 5)  # after COMMIT
        assert await redis.exists(store.marker(5))
        messages = []
        async with asyncio.timeout(10):
            while len(messages) < 2:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    decoded = orjson.loads(message["data"])
                    if "keys" in decoded:  # not the announcement of a new generation
                        messages.append(decoded)
        assert "change" not in messages[0]
        assert messages[1]["change"] == 5
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()


async def test_a_miss_whose_l2_read_outlasts_a_fill_takes_the_filled_value(
    feed: Feed, nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Single flight across the L2 read: a caller that missed in L1, then waited on Redis
    while another caller's fill finished (and left the in-flight table), must find the
    stored value rather than compute a second time."""
    node, _ = nodes
    l2 = node.cache.l2
    assert l2 is not None
    computing, release, second_read, resume = (asyncio.Event() for _ in range(4))
    real_get = l2.get
    reads = 0

    async def gated_get(key: str) -> bytes | None:
        nonlocal reads
        reads += 1
        found = await real_get(key)
        if reads == 2:  # the second caller's read: it answers after the fill is done
            second_read.set()
            await resume.wait()
        return found

    async def compute() -> str | None:
        node.computed.append("x")
        computing.set()
        await release.wait()
        async with feed.db.reader() as s:
            return await s.scalar(select(Folder.name).where(Folder.id == 1))

    def lookup() -> asyncio.Task[Any]:
        return asyncio.create_task(
            node.cache.get_or_compute("folder", 1, [Row("folders", 1)], compute)
        )

    monkeypatch.setattr(l2, "get", gated_get)
    first = lookup()
    await computing.wait()  # the first fill runs
    second = lookup()
    await second_read.wait()  # the second caller missed L1 and L2, and is held
    release.set()
    assert (await first).value == "one"  # the fill is stored and out of the in-flight table
    resume.set()
    assert (await second).value == "one"
    assert node.computed == ["x"]
