"""The exact cache over a real database and change feed (in-memory stamps).

Races are forced with events: no sleeps, no timing assumptions.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import insert, select, update

from lockstep.cache import Cache, MemoryStampStore, MirroredStampStore, Row, Scope, Table
from lockstep.exceptions import ConfigurationError
from lockstep.testing import FakeClock

from ..conftest import Cached, Folder, Item


async def _folder_name(cached: Cached, folder_id: int) -> str | None:
    async with cached.feed.db.reader() as s:
        return await s.scalar(select(Folder.name).where(Folder.id == folder_id))


async def _seed(cached: Cached) -> None:
    async with cached.feed.db.writer() as s:
        s.add_all([Folder(id=1, org_id=1, name="one"), Folder(id=2, org_id=1, name="two")])
        s.add_all([Item(id=10, org_id=1, folder_id=1), Item(id=20, org_id=1, folder_id=2)])


async def _rename(cached: Cached, folder_id: int, name: str) -> None:
    async with cached.feed.db.writer() as s:
        folder = await s.get(Folder, folder_id)
        assert folder is not None
        folder.name = name


async def test_hit_after_miss_and_exact_invalidation(cached: Cached) -> None:
    await _seed(cached)
    calls: list[int] = []

    async def get(folder_id: int) -> str | None:
        async def compute() -> str | None:
            calls.append(folder_id)
            return await _folder_name(cached, folder_id)

        found = await cached.cache.get_or_compute(
            "folder", folder_id, [Row("folders", folder_id)], compute
        )
        return found.value

    assert await get(1) == "one"
    assert await get(1) == "one"
    assert await get(2) == "two"
    assert calls == [1, 2]
    await _rename(cached, 1, "uno")
    assert await get(1) == "uno"  # invalidated by the commit
    assert await get(2) == "two"  # a write to folder 1 does not evict folder 2
    assert calls == [1, 2, 1]


async def test_a_write_committed_during_a_fill_is_never_hidden(cached: Cached) -> None:
    await _seed(cached)
    read_done = asyncio.Event()
    write_done = asyncio.Event()

    async def slow_compute() -> str | None:
        value = await _folder_name(cached, 1)  # reads "one"
        read_done.set()
        await write_done.wait()  # the write commits before this fill tries to store
        return value

    deps = [Row("folders", 1)]
    fill = asyncio.create_task(cached.cache.get_or_compute("folder", 1, deps, slow_compute))
    await read_done.wait()
    await _rename(cached, 1, "uno")
    write_done.set()
    first = await fill
    assert first.value == "one"  # the caller whose read began before the write
    assert cached.cache.metrics._rejected._value.get() == 1

    async def fresh() -> str | None:
        return await _folder_name(cached, 1)

    again = await cached.cache.get_or_compute("folder", 1, deps, fresh)
    assert (again.status, again.value) == ("miss", "uno")


async def test_concurrent_misses_compute_once(cached: Cached) -> None:
    await _seed(cached)
    release = asyncio.Event()
    started = asyncio.Event()
    computed = 0

    async def compute() -> str | None:
        nonlocal computed
        computed += 1
        started.set()
        await release.wait()
        return await _folder_name(cached, 2)

    calls = [
        asyncio.create_task(cached.cache.get_or_compute("folder", 2, [Row("folders", 2)], compute))
        for _ in range(50)
    ]
    await started.wait()
    release.set()
    results = await asyncio.gather(*calls)
    assert computed == 1
    assert {r.value for r in results} == {"two"}


async def test_a_cancelled_caller_does_not_cancel_the_fill_for_others(cached: Cached) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def compute() -> int:
        started.set()
        await release.wait()
        return 42

    first = asyncio.create_task(cached.cache.get_or_compute("n", 1, [Table("folders")], compute))
    await started.wait()  # the fill is running; the first caller waits on it
    second = asyncio.create_task(cached.cache.get_or_compute("n", 1, [Table("folders")], compute))
    first.cancel()
    release.set()
    assert (await second).value == 42
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_none_is_cached_and_not_found_dies_on_insert(cached: Cached) -> None:
    computed = 0

    async def compute() -> str | None:
        nonlocal computed
        computed += 1
        return await _folder_name(cached, 5)

    deps = [Row("folders", 5)]
    assert (await cached.cache.get_or_compute("folder", 5, deps, compute)).value is None
    hit = await cached.cache.get_or_compute("folder", 5, deps, compute)
    assert (hit.status, hit.value, computed) == ("hit", None, 1)
    async with cached.feed.db.writer() as s:
        s.add(Folder(id=5, org_id=1, name="five"))
    assert (await cached.cache.get_or_compute("folder", 5, deps, compute)).value == "five"


async def test_keyless_bulk_insert_kills_cached_not_found(cached: Cached) -> None:
    async def compute() -> int | None:
        async with cached.feed.db.reader() as s:
            return await s.scalar(select(Item.id).where(Item.id == 99))

    async with cached.feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1))
    deps = [Row("items", 99)]
    assert (await cached.cache.get_or_compute("item", 99, deps, compute)).value is None
    async with cached.feed.db.writer() as s:
        await s.execute(insert(Item), [{"id": 99, "org_id": 1, "folder_id": 1}])
    assert (await cached.cache.get_or_compute("item", 99, deps, compute)).value == 99


async def test_scope_dependencies_follow_moves_and_bulk_updates(cached: Cached) -> None:
    await _seed(cached)

    async def items_in(folder_id: int) -> list[int]:
        async def compute() -> list[int]:
            async with cached.feed.db.reader() as s:
                rows = await s.scalars(
                    select(Item.id).where(Item.folder_id == folder_id).order_by(Item.id)
                )
                return list(rows)

        found = await cached.cache.get_or_compute(
            "items", folder_id, [Scope("items", folder_id=folder_id)], compute
        )
        return found.value

    assert await items_in(1) == [10]
    assert await items_in(2) == [20]
    async with cached.feed.db.writer() as s:
        item = await s.get(Item, 10)
        assert item is not None
        item.folder_id = 2
    assert await items_in(1) == []
    assert await items_in(2) == [10, 20]
    async with cached.feed.db.writer() as s:
        await s.execute(update(Item).where(Item.id == 20).values(folder_id=1))
    assert await items_in(1) == [20]


async def test_reads_inside_a_write_transaction_are_not_cached(cached: Cached) -> None:
    await _seed(cached)
    async with cached.feed.db.writer() as s:
        folder = await s.get(Folder, 1)
        assert folder is not None
        folder.name = "pending"
        await s.flush()

        async def compute() -> str | None:
            return await s.scalar(select(Folder.name).where(Folder.id == 1))

        inside = await cached.cache.get_or_compute("folder", 1, [Row("folders", 1)], compute)
        assert (inside.status, inside.value) == ("bypass", "pending")
    assert cached.cache.l1_size == 0


async def test_revalidate_and_no_store(cached: Cached) -> None:
    await _seed(cached)
    counter = 0

    async def compute() -> int:
        nonlocal counter
        counter += 1
        return counter

    deps = [Table("folders")]
    assert (await cached.cache.get_or_compute("c", 1, deps, compute, store=False)).value == 1
    assert (await cached.cache.get_or_compute("c", 1, deps, compute)).value == 2
    assert (await cached.cache.get_or_compute("c", 1, deps, compute)).value == 2
    revalidated = await cached.cache.get_or_compute("c", 1, deps, compute, revalidate=True)
    assert (revalidated.status, revalidated.value) == ("miss", 3)
    assert (await cached.cache.get_or_compute("c", 1, deps, compute)).value == 3


async def test_etags_are_stable_and_change_with_the_data(cached: Cached) -> None:
    await _seed(cached)

    async def compute() -> str | None:
        return await _folder_name(cached, 1)

    deps = [Row("folders", 1)]
    first = await cached.cache.get_or_compute("folder", 1, deps, compute)
    second = await cached.cache.get_or_compute("folder", 1, deps, compute)
    assert first.etag == second.etag
    other = await cached.cache.get_or_compute("folder", 2, [Row("folders", 2)], compute)
    assert other.etag != first.etag
    await _rename(cached, 1, "changed")
    third = await cached.cache.get_or_compute("folder", 1, deps, compute)
    assert third.etag != first.etag


async def test_evicted_stamps_cost_misses_never_stale_values(cached: Cached) -> None:
    await _seed(cached)
    tiny = Cache(MemoryStampStore(max_keys=3), tracking=cached.feed.changes.tracking)
    cached.feed.changes.hub.subscribe(tiny.invalidate)

    async def name(folder_id: int) -> str | None:
        async def compute() -> str | None:
            return await _folder_name(cached, folder_id)

        return (
            await tiny.get_or_compute("f", folder_id, [Row("folders", folder_id)], compute)
        ).value

    assert await name(1) == "one"
    for other in range(100, 110):  # push folder 1's stamps out of the bounded store
        await tiny.get_or_compute(
            "x", other, [Row("folders", other)], lambda: _folder_name(cached, 1)
        )
    await _rename(cached, 1, "uno")
    assert await name(1) == "uno"


async def test_ttl_is_only_for_non_database_values(cached: Cached) -> None:
    clock = FakeClock()
    cache = Cache(MemoryStampStore(), clock=clock)
    counter = 0

    async def external() -> int:
        nonlocal counter
        counter += 1
        return counter

    with pytest.raises(ConfigurationError):
        await cache.get_or_compute("x", 1, [Table("folders")], external, ttl=5)
    assert (await cache.get_or_compute("rate", "EUR", [], external, ttl=60)).value == 1
    clock.advance(dt.timedelta(seconds=59))
    assert (await cache.get_or_compute("rate", "EUR", [], external, ttl=60)).value == 1
    clock.advance(dt.timedelta(seconds=2))
    assert (await cache.get_or_compute("rate", "EUR", [], external, ttl=60)).value == 2


async def test_stale_while_revalidate_serves_old_and_refreshes_once(cached: Cached) -> None:
    clock = FakeClock()
    cache = Cache(MemoryStampStore(), clock=clock)
    release = asyncio.Event()
    counter = 0

    async def external() -> int:
        nonlocal counter
        counter += 1
        if counter > 1:
            await release.wait()
        return counter

    kwargs = {"ttl": 10.0, "stale_while_revalidate": 30.0}
    assert (await cache.get_or_compute("r", 1, [], external, **kwargs)).value == 1
    clock.advance(dt.timedelta(seconds=15))
    stale = await cache.get_or_compute("r", 1, [], external, **kwargs)
    again = await cache.get_or_compute("r", 1, [], external, **kwargs)
    assert (stale.value, again.value) == (1, 1)
    assert len(cache._inflight) == 1  # one refresh in flight, not one per stale read
    release.set()
    await asyncio.gather(*cache._inflight.values())
    assert (await cache.get_or_compute("r", 1, [], external, **kwargs)).value == 2


def test_dependencies_are_checked_against_the_feed(cached: Cached) -> None:
    with pytest.raises(ConfigurationError):
        cached.cache.check([Scope("items", title="x")])
    cached.cache.check([Scope("items", folder_id=1), Row("folders", 1), Table("tags")])


async def _rolled_back_rename(cached: Cached) -> None:
    async with cached.feed.db.writer() as s:
        folder = await s.get(Folder, 1)
        assert folder is not None
        folder.name = "never"
        await s.flush()
        raise RuntimeError("roll back")


async def test_rollbacks_invalidate_nothing(cached: Cached) -> None:
    """Requirement 5: invalidation only after commit; a rolled-back write leaves entries."""
    await _seed(cached)

    async def compute() -> str | None:
        return await _folder_name(cached, 1)

    deps = [Row("folders", 1)]
    await cached.cache.get_or_compute("folder", 1, deps, compute)
    with pytest.raises(RuntimeError):
        await _rolled_back_rename(cached)
    after = await cached.cache.get_or_compute("folder", 1, deps, compute)
    assert (after.status, after.value) == ("hit", "one")


async def test_waiters_hold_no_database_connection(cached: Cached) -> None:
    """Requirement 11: 50 concurrent misses, one computation, no pooled connection held
    by the callers waiting for it."""
    await _seed(cached)
    computing = asyncio.Event()
    release = asyncio.Event()

    async def compute() -> str | None:
        computing.set()
        await release.wait()
        return await _folder_name(cached, 1)

    calls = [
        asyncio.create_task(cached.cache.get_or_compute("f", 1, [Row("folders", 1)], compute))
        for _ in range(50)
    ]
    await computing.wait()
    stats = cached.feed.db.pool_stats()
    assert all(pool["checked_out"] == 0 for pool in stats.values())
    release.set()
    assert {(await c).value for c in calls} == {"one"}


async def test_announce_moves_stamps_without_marking_a_change(cached: Cached) -> None:
    """The bump a writer makes right before COMMIT: stamps move at once, but no change set
    is marked applied and no change id travels, so tokens and the relay are unaffected."""
    await _seed(cached)
    cache = cached.cache
    deps = [Row("folders", 1)]
    _, before = await cache.snapshot(deps)
    mirror = cache.stamps if isinstance(cache.stamps, MirroredStampStore) else None
    markers_before = await _applied_markers(cache)
    seen_before = set(mirror._seen_set) if mirror is not None else set()
    received = mirror.received if mirror is not None else 0

    assert await cache.announce({"r:folders:1"})
    _, after = await cache.snapshot(deps)
    _, shared = await cache.snapshot(deps, authoritative=True)
    assert after != before
    assert shared == after
    assert await _applied_markers(cache) == markers_before
    if mirror is not None:
        async with asyncio.timeout(10):
            await mirror.wait_received(received + 1)  # the announcement came round
        assert mirror._seen_set == seen_before
    assert await cache.announce(set())  # nothing to bump is fine


async def test_authoritative_snapshots_skip_a_local_mirror(cached: Cached) -> None:
    await _seed(cached)
    cache = cached.cache
    deps = [Row("folders", 1)]
    keys, first = await cache.snapshot(deps)
    if isinstance(cache.stamps, MirroredStampStore) and cache.stamps.trusted:
        # A mirror that has not applied a bump yet: what it holds is older than Redis.
        for key in keys:
            cache.stamps._mirror[key] = "older"
        _, mirrored = await cache.snapshot(deps)
        assert set(mirrored.values) == {"older"}
    _, shared = await cache.snapshot(deps, authoritative=True)
    assert shared == first


async def _applied_markers(cache: Cache) -> int:
    stamps = cache.stamps
    if not isinstance(stamps, MirroredStampStore):
        return 0
    redis = stamps.remote.redis
    return len([key async for key in redis.scan_iter(match="*:applied:*")])
