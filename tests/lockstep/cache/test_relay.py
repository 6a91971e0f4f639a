"""The relay re-applies a committed change whose writer never bumped Redis (a crash)."""

from __future__ import annotations

from redis.asyncio import Redis
from sqlalchemy import select

from lockstep.cache import Cache, CacheMetrics, RedisStampStore, RedisValueStore, Row
from lockstep.cache.relay import InvalidationRelay

from ..conftest import Feed, Folder


async def test_a_crashed_writers_change_is_relayed(feed: Feed, redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    stamps = RedisStampStore(redis, prefix="relay")
    cache = Cache(stamps, l2=RedisValueStore(redis, stamps), tracking=feed.changes.tracking)
    relay = InvalidationRelay(feed.changes.feed, stamps)
    other = InvalidationRelay(feed.changes.feed, stamps)
    async with feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1, name="one"))
    cursor, _ = await relay.step(None)  # takes the lease, starts at the head of the log

    async def name() -> str | None:
        async def compute() -> str | None:
            async with feed.db.reader() as s:
                return await s.scalar(select(Folder.name).where(Folder.id == 1))

        return (await cache.get_or_compute("f", 1, [Row("folders", 1)], compute)).value

    assert await name() == "one"
    # The writer commits and dies before bumping: no listener invalidates anything.
    async with feed.db.writer() as s:
        folder = await s.get(Folder, 1)
        assert folder is not None
        folder.name = "uno"
    assert await name() == "one"  # stale until the relay runs
    assert (await other.step(None)) == (None, 0)  # the lease belongs to the first relay
    await relay.step(cursor)
    assert relay.relayed == 1
    assert await name() == "uno"
    # A change set the writer did bump is not bumped again by the relay.
    feed.changes.hub.subscribe(cache.invalidate)
    async with feed.db.writer() as s:
        folder = await s.get(Folder, 1)
        assert folder is not None
        folder.name = "eins"
    await relay.step(cursor)
    assert relay.relayed == 1
    assert await name() == "eins"
    await redis.aclose()


async def test_a_relay_that_lost_its_place_in_the_log_retires_everything(
    feed: Feed, redis_url: str
) -> None:
    """Without its saved cursor (first start, FLUSHALL, eviction) the relay cannot know which
    change sets it would skip, so it draws a new generation before starting at the head."""
    redis = Redis.from_url(redis_url)
    metrics = CacheMetrics()
    stamps = RedisStampStore(redis, prefix="relay", metrics=metrics)

    def relay_resets() -> float:
        return metrics.resets.labels("relay")._value.get()

    first = InvalidationRelay(feed.changes.feed, stamps)
    assert (await first.step(None))[0] is not None
    assert relay_resets() == 1
    generation = (await stamps.read(["k"])).generation
    await redis.delete("{relay}:lease:relay")  # the first relay's process went away
    second = InvalidationRelay(feed.changes.feed, stamps)
    assert (await second.step(None))[0] is not None
    assert relay_resets() == 1  # the saved cursor was found: nothing skipped
    assert (await stamps.read(["k"])).generation == generation
    await redis.delete("{relay}:lease:relay", "{relay}:state:relay.cursor")  # evicted
    third = InvalidationRelay(feed.changes.feed, stamps)
    await third.step(None)
    assert relay_resets() == 2
    assert (await stamps.read(["k"])).generation != generation
    await redis.aclose()
