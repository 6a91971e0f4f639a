"""Redis losing state or stalling (issue #12, item 5), with two "processes": two caches,
each with its own Redis client, breaker, stamp mirror and L1, on one database and on a Redis
of the test's own that the test deletes from, flushes, fills, freezes and restarts.

For each fault: a value is cached (and served as a hit) in both; the fault; a write on A;
then reads on B and on A, with A's read-your-writes token and without it: none returns the
old value once the write has returned. Tokenless reads on B wait until B has received the
write's invalidation (the channel is asynchronous), except when Redis is frozen, where the
lease must already have done its work. The same cases run with real OS processes in
``test_redis_fault_processes.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import select

from lockstep.cache import Cache, CacheMetrics, RedisBackend, RedisStampStore, Row
from lockstep.cache.relay import InvalidationRelay
from lockstep.changes import consistency_scope
from lockstep.testing import RedisServer

from ..conftest import Feed, Folder

pytestmark = pytest.mark.redis

NAMESPACE = "faults"
CLOCK = "{" + NAMESPACE + "}:clock"


@dataclass
class Node:
    backend: RedisBackend
    cache: Cache
    computed: list[str]

    @property
    def metrics(self) -> CacheMetrics:
        return self.cache.metrics


def client(server: RedisServer) -> Redis:
    # As the runtime builds it: one attempt per call, bounded.
    return Redis.from_url(
        server.url(), socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


@pytest.fixture
async def nodes(feed: Feed, own_redis: RedisServer) -> AsyncIterator[tuple[Node, Node]]:
    made: list[Node] = []
    for _ in range(2):
        backend = RedisBackend(
            client(own_redis),
            namespace=NAMESPACE,
            timeout=0.5,
            lease=0.25,
            breaker_failures=2,
            breaker_open_seconds=0.2,
            owns_client=True,
        )
        cache = Cache(
            backend.stamps,
            l2=backend.values,
            tracking=feed.changes.tracking,
            metrics=CacheMetrics(),
        )
        backend.attach(cache, feed.changes)
        await backend.mirror.start()
        made.append(Node(backend, cache, []))
    # Only A writes: the change hub is per process.
    feed.changes.hub.subscribe(made[0].cache.invalidate)
    async with feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1, name="one"))
    yield made[0], made[1]
    own_redis.resume()
    for node in made:
        await node.backend.stop()


async def read(feed: Feed, node: Node, token: int = 0) -> tuple[str | None, str]:
    """Folder 1's name through ``node``'s cache, and how it was served."""

    async def compute() -> str | None:
        node.computed.append("x")
        async with feed.db.reader() as s:
            return await s.scalar(select(Folder.name).where(Folder.id == 1))

    with consistency_scope(min_change=token):
        found = await node.cache.get_or_compute("folder", 1, [Row("folders", 1)], compute)
    return found.value, found.status


async def warm(feed: Feed, *nodes: Node) -> None:
    """Cached in every node, and served from the cache: otherwise a fault proves nothing."""
    for node in nodes:
        await read(feed, node)
        assert await read(feed, node) == ("one", "hit")


async def rename(feed: Feed, name: str) -> int:
    with consistency_scope() as holder:
        async with feed.db.writer() as s:
            folder = await s.get(Folder, 1)
            assert folder is not None
            folder.name = name
    assert holder.token is not None
    return holder.token


async def until(condition: Callable[[], bool | Awaitable[bool]], within: float = 15.0) -> None:
    """Re-check ``condition`` until it holds (for what Redis or a background task does)."""
    async with asyncio.timeout(within):
        delay = 0.01
        while True:
            outcome = condition()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await asyncio.sleep(delay)  # noqa: sleep - polling a condition with a deadline
            delay = min(delay * 2, 0.1)


async def received(node: Node, count: int) -> None:
    async with asyncio.timeout(10):
        await node.backend.mirror.wait_received(count)


async def never_stale(feed: Feed, a: Node, b: Node, token: int, expected: str) -> None:
    for _ in range(5):
        assert (await read(feed, b, token))[0] == expected
        assert (await read(feed, b))[0] == expected
        assert (await read(feed, a, token))[0] == expected
        assert (await read(feed, a))[0] == expected


def resets(*nodes: Node, reason: str) -> float:
    return sum(node.metrics.resets.labels(reason)._value.get() for node in nodes)


# -- state lost: DEL, FLUSHALL, eviction ----------------------------------------------------


async def delete_the_clock(server: RedisServer, redis: Redis) -> None:
    # The clock hash holds the generation, the invalidation sequence and the stamp counter:
    # the "sequence key" of the issue.
    assert await redis.delete(CLOCK) == 1


async def flush_everything(server: RedisServer, redis: Redis) -> None:
    await redis.flushall()


async def evict(server: RedisServer, redis: Redis) -> None:
    """Fill Redis past ``maxmemory`` under ``allkeys-lru`` until the stamp of folder 1 and
    the clock itself have been evicted (the heartbeats re-create the clock at once, under a
    new generation, so look at the generation)."""
    generation = await redis.hget(CLOCK, "gen")
    used = int((await redis.info("memory"))["used_memory"])
    server.config_set("maxmemory-policy", "allkeys-lru")
    server.config_set("maxmemory", used + 2_000_000)
    stamp = "{" + NAMESPACE + "}:st:r:folders:1"
    filler = b"x" * 10_000
    for batch in range(400):  # bounded: 400 x 50 x 10 kB
        pipe = redis.pipeline(transaction=False)
        for i in range(50):
            pipe.set(f"filler:{batch}:{i}", filler)
        await pipe.execute()
        if not await redis.exists(stamp) and await redis.hget(CLOCK, "gen") != generation:
            break
    else:
        pytest.fail("the stamp and the clock were never evicted")
    server.config_set("maxmemory", 0)


@pytest.mark.parametrize("lose", [delete_the_clock, flush_everything, evict])
async def test_lost_state_never_leaves_a_stale_hit(
    feed: Feed,
    nodes: tuple[Node, Node],
    own_redis: RedisServer,
    lose: Callable[[RedisServer, Redis], Awaitable[None]],
) -> None:
    a, b = nodes
    await warm(feed, a, b)
    count = b.backend.mirror.received
    await lose(own_redis, a.backend.redis)
    token = await rename(feed, "uno")
    assert (await read(feed, b, token))[0] == "uno"  # the token: at once
    await received(b, count + 1)
    await never_stale(feed, a, b, token, "uno")
    assert resets(a, b, reason="lost") >= 1  # a new generation retired every old value
    # And the cache works again afterwards.
    await read(feed, b)
    assert await read(feed, b) == ("uno", "hit")


async def test_a_lost_clock_never_hands_out_a_stamp_value_twice(own_redis: RedisServer) -> None:
    """Before: deleting the clock restarted its counter while stamp keys survived, so a key
    could be bumped back to a value an old entry was stored under (a stale hit). Values now
    carry their generation, and a value of another generation reads as a fresh one."""
    redis = client(own_redis)
    store = RedisStampStore(redis, prefix=NAMESPACE)
    try:
        seen: set[str] = set()
        for _ in range(5):
            await store.bump({"k", "other"})
        seen.update((await store.read(["k"])).values)
        await redis.delete(CLOCK)  # the stamp keys survive
        for _ in range(20):
            value = (await store.read(["k"])).values[0]
            assert value not in seen
            seen.add(value)
            await store.bump({"k"})
    finally:
        await redis.aclose()


# -- restart from an older snapshot ---------------------------------------------------------


async def test_restart_from_an_older_snapshot(
    feed: Feed, nodes: tuple[Node, Node], own_redis: RedisServer
) -> None:
    a, b = nodes
    await warm(feed, a, b)
    own_redis.snapshot()  # stamps, values and sequence of "one"
    count = b.backend.mirror.received
    token = await rename(feed, "uno")
    await received(b, count + 1)
    assert (await read(feed, b))[0] == "uno"
    own_redis.kill()
    own_redis.start()  # back on the snapshot: the entry for "one" is current there again
    assert (await read(feed, b))[0] == "uno"
    assert (await read(feed, a, token))[0] == "uno"
    await never_stale(feed, a, b, token, "uno")
    assert resets(a, b, reason="restart") >= 1
    # Writes after the restart invalidate as usual.
    await until(lambda: a.backend.mirror.live and b.backend.mirror.live)
    count = b.backend.mirror.received
    token = await rename(feed, "eins")
    await received(b, count + 1)
    await never_stale(feed, a, b, token, "eins")


async def test_another_server_process_is_noticed_on_each_scripts_first_run(
    own_redis: RedisServer,
) -> None:
    """A restart or a failover empties the script cache, so each script's first run there
    is the one that checks the server's ``run_id`` (later runs skip that ~5 µs)."""
    redis = client(own_redis)
    metrics = CacheMetrics()
    store = RedisStampStore(redis, prefix=NAMESPACE, metrics=metrics)
    try:
        generation = (await store.read(["k"])).generation
        await redis.hset(CLOCK, "run", "another-server-process")  # as if restored
        assert (await store.read(["k"])).generation == generation  # not checked again
        await redis.script_flush()  # what a restart or a failover does to the script cache
        assert (await store.read(["k"])).generation != generation
        assert metrics.resets.labels("restart")._value.get() == 1
    finally:
        await redis.aclose()


# -- frozen Redis ---------------------------------------------------------------------------


async def test_a_frozen_redis_is_an_outage(
    feed: Feed, nodes: tuple[Node, Node], own_redis: RedisServer
) -> None:
    a, b = nodes
    await warm(feed, a, b)
    own_redis.pause()
    try:
        # A's bump times out; the write still succeeds and returns.
        token = await rename(feed, "uno")
        # B's mirror has had no PONG for longer than its lease: nothing it holds is served.
        outcomes = [await read(feed, b) for _ in range(20)]
        outcomes += [await read(feed, b, token) for _ in range(5)]
        outcomes += [await read(feed, a, token), await read(feed, a)]
        assert outcomes == [("uno", "bypass")] * len(outcomes)
        # Requests stopped waiting: the breaker answers for Redis.
        assert b.metrics.breaker_rejected._value.get() >= 20
        assert b.metrics.breaker_state._value.get() == 2
    finally:
        own_redis.resume()
    # Redis ran nothing of ours for longer than the heartbeat promised: a new generation
    # retires what the frozen Redis still holds before anyone trusts it again.
    await never_stale(feed, a, b, token, "uno")
    await until(lambda: b.backend.breaker.closed and b.backend.mirror.trusted)
    assert resets(a, b, reason="stall") + resets(a, reason="bump_failed") >= 1
    await read(feed, b)
    assert await read(feed, b) == ("uno", "hit")


class Blackhole:
    """A TCP proxy in front of Redis that can drop every byte, both ways: a network black
    hole (connections stay open, nothing is refused, nothing arrives). Unlike a frozen
    Redis, a command sent into it is never executed later."""

    def __init__(self, target: RedisServer) -> None:
        self.target = target
        self.dropping = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target.port
        )
        self._writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if not self.dropping:
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_black_hole_loses_the_bump_and_still_nothing_stale(
    feed: Feed, own_redis: RedisServer
) -> None:
    """Every process cut off from Redis: A's bump never arrives (not even later). When the
    network heals, Redis still holds the old stamps and the old value; the heartbeat
    promise that nobody could keep makes the first script retire them."""
    hole = Blackhole(own_redis)
    await hole.start()
    made: list[Node] = []
    try:
        for _ in range(2):
            redis = Redis(
                host="127.0.0.1",
                port=hole.port,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 0),
            )
            backend = RedisBackend(
                redis,
                namespace=NAMESPACE,
                breaker_failures=2,
                breaker_open_seconds=0.2,
                owns_client=True,
            )
            cache = Cache(
                backend.stamps,
                l2=backend.values,
                tracking=feed.changes.tracking,
                metrics=CacheMetrics(),
            )
            backend.attach(cache, feed.changes)
            await backend.mirror.start()
            made.append(Node(backend, cache, []))
        a, b = made
        feed.changes.hub.subscribe(a.cache.invalidate)
        async with feed.db.writer() as s:
            s.add(Folder(id=1, org_id=1, name="one"))
        await warm(feed, a, b)
        hole.dropping = True
        token = await rename(feed, "uno")  # the bump times out, and is lost for good
        assert [await read(feed, b) for _ in range(5)] == [("uno", "bypass")] * 5
        hole.dropping = False
        await never_stale(feed, a, b, token, "uno")
        await until(lambda: b.backend.breaker.closed and b.backend.mirror.trusted)
        await never_stale(feed, a, b, token, "uno")
        assert resets(a, b, reason="stall") >= 1
    finally:
        for node in made:
            await node.backend.stop()
        await hole.close()


# -- refused writes, tokens whose change never reached Redis --------------------------------


async def test_a_bump_refused_for_memory_deletes_the_stamps(own_redis: RedisServer) -> None:
    redis = client(own_redis)
    store = RedisStampStore(redis, prefix=NAMESPACE)
    pubsub = redis.pubsub()
    try:
        before = await store.read(["k"])
        await pubsub.subscribe(store.channel)
        own_redis.config_set("maxmemory-policy", "noeviction")
        own_redis.config_set("maxmemory", 1)  # every write is refused from now on
        assert await store.bump({"k"}, change_id=7)
        assert not await redis.exists(store.key("k"))
        async with asyncio.timeout(10):
            while (message := await pubsub.get_message(timeout=1.0)) is None or (
                message["type"] != "message"
            ):
                pass
        assert message["data"] == b'{"keys":["k"]}'
        with pytest.raises(ResponseError, match="maxmemory"):
            await store.read(["k"])  # a fresh stamp cannot be stored: served from the database
        own_redis.config_set("maxmemory", 0)
        assert (await store.read(["k"])).values != before.values
        assert not await redis.exists(store.marker(7))  # the relay will bump it again
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()


async def test_a_token_is_never_answered_from_stamps_that_lack_its_change(
    feed: Feed, nodes: tuple[Node, Node]
) -> None:
    """A writer whose bump never reached Redis (cut off from it while the others are not):
    a read carrying its token is computed from the database and stored nowhere, until the
    relay has applied the change."""
    a, b = nodes
    await warm(feed, a, b)
    feed.changes.hub._listeners.remove(a.cache.invalidate)  # A cannot reach Redis
    cursor = await feed.changes.feed.head()
    token = await rename(feed, "uno")
    rejected = b.metrics.fills.labels("rejected")._value.get()
    assert await read(feed, b, token) == ("uno", "miss")
    assert await read(feed, b, token) == ("uno", "miss")
    assert b.metrics.fills.labels("rejected")._value.get() == rejected + 2
    relay = InvalidationRelay(feed.changes.feed, a.backend.remote)
    await relay.step(cursor)
    assert relay.relayed == 1
    assert (await read(feed, b, token))[0] == "uno"
    assert await read(feed, b, token) == ("uno", "hit")


async def test_only_a_committed_changes_failed_bump_retires_everything(
    own_redis: RedisServer,
) -> None:
    """An announcement before COMMIT that fails is followed by the bump after COMMIT, and a
    relay round that fails is read again: neither needs a new generation."""
    redis = client(own_redis)
    store = RedisStampStore(redis, prefix=NAMESPACE)
    try:
        await store.read(["k"])
        own_redis.kill()
        with pytest.raises(RedisError):
            await store.bump({"k"})
        with pytest.raises(RedisError):
            await store.bump({"k"}, 7, only_if_unapplied=True)
        assert not store.needs_reset
        with pytest.raises(RedisError):
            await store.bump({"k"}, 8)
        assert store.needs_reset
    finally:
        await store.close()
        await redis.aclose()
