"""A local mirror of Redis stamps, kept coherent by the invalidation channel.

L1 hits must not pay a Redis round trip (110-170 µs) for the stamps, so each process keeps
the stamps it has read, and drops them when another process's bump is announced.

Correctness rules (each has a test):

* The mirror is used only while subscribed. It starts empty at every (re)subscription,
  and learns the current sequence number after the subscription is live.
* A gap in sequence numbers (a lost message) flushes the mirror, and the L1 with it.
* A value read from Redis is kept only if no invalidation newer than that read has been
  applied meanwhile (so a racing bump cannot be overwritten by an older value).
* A request carrying a read-your-writes token this process has not seen applied reads its
  stamps from Redis itself: the writer bumped them there before answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis

from lockstep.cache.metrics import CacheMetrics
from lockstep.cache.stores.base import StampSnapshot
from lockstep.cache.stores.redis import RedisStampStore
from lockstep.changes import required_change

log = structlog.get_logger("lockstep.cache")


class MirroredStampStore:
    """A :class:`RedisStampStore` with a bounded local mirror (call :meth:`start`)."""

    def __init__(
        self,
        remote: RedisStampStore,
        *,
        max_keys: int = 200_000,
        metrics: CacheMetrics | None = None,
        on_flush: Callable[[], None] | None = None,
        reconnect_delay: float = 0.5,
    ) -> None:
        self.remote = remote
        self.metrics = metrics
        self.on_flush = on_flush
        self._mirror: OrderedDict[str, str] = OrderedDict()
        self._generation: str | None = None
        self._max_keys = max_keys
        self._last_seq: int | None = None
        self._seen: deque[int] = deque(maxlen=10_000)
        self._seen_set: set[int] = set()
        self._live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reconnect_delay = reconnect_delay
        self._applied = asyncio.Event()
        self.flushes = 0

    # -- lifecycle --

    async def start(self, wait: float = 5.0) -> None:
        """Subscribe, and wait up to ``wait`` seconds for the mirror to go live. If Redis does
        not answer, start anyway: reads go to Redis (or, failing that, the database) until
        the subscription succeeds in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen())
        try:
            async with asyncio.timeout(wait):
                await self._live.wait()
        except TimeoutError:
            log.warning("cache_invalidation_channel_not_live", waited=wait)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._task
            self._task = None
        self._go_dark()

    @property
    def live(self) -> bool:
        return self._live.is_set()

    @property
    def last_seq(self) -> int | None:
        """The sequence number of the last invalidation applied (None while not subscribed)."""
        return self._last_seq

    async def wait_applied(self, seq: int) -> None:
        """Return once invalidation ``seq`` (or a later one) has been applied here."""
        while self._last_seq is None or self._last_seq < seq:
            await self._applied.wait()

    # -- the stamp store interface --

    async def read(self, keys: Sequence[str]) -> StampSnapshot:
        wanted = required_change()
        if self._live.is_set() and (not wanted or wanted in self._seen_set):
            mirror = self._mirror
            values = [mirror.get(k) for k in keys]
            if self._generation is not None and None not in values:
                return StampSnapshot(self._generation, tuple(v for v in values if v is not None))
        seq_before = self._last_seq
        snapshot, seq = await self.remote.read_with_seq(keys)
        # Keep what we read only if it is not older than what we have already applied.
        if (
            self._live.is_set()
            and seq_before is not None
            and self._last_seq == seq_before
            and seq_before <= seq
        ):
            if self._generation != snapshot.generation:
                self._mirror.clear()
                self._generation = snapshot.generation
            for key, value in zip(keys, snapshot.values, strict=True):
                self._mirror[key] = value
            while len(self._mirror) > self._max_keys:
                self._mirror.popitem(last=False)
        return snapshot

    async def bump(self, keys: Collection[str], change_id: int) -> None:
        for key in keys:
            self._mirror.pop(key, None)
        await self.remote.bump(keys, change_id)

    # -- the invalidation channel --

    def _go_dark(self) -> None:
        self._live.clear()
        self._flush()
        self._last_seq = None

    def _flush(self) -> None:
        self._mirror.clear()
        self._generation = None
        self.flushes += 1
        if self.on_flush is not None:
            self.on_flush()

    def apply(self, message: dict[str, Any]) -> None:
        """Apply one invalidation message (public for tests that force a gap)."""
        seq = int(message["seq"])
        if self._last_seq is not None and seq <= self._last_seq:
            return  # already reflected in what we read after subscribing
        if message.get("flush") or (self._last_seq is not None and seq != self._last_seq + 1):
            if not message.get("flush"):
                log.warning("cache_invalidation_gap", expected=(self._last_seq or 0) + 1, got=seq)
            self._flush()
        else:
            keys = message.get("keys") or []
            if "*" in keys:
                self._flush()
            else:
                for key in keys:
                    self._mirror.pop(key, None)
        self._last_seq = seq
        self._applied.set()
        self._applied = asyncio.Event()
        change = message.get("change")
        if change is not None:
            if len(self._seen) == self._seen.maxlen:
                self._seen_set.discard(self._seen[0])
            self._seen.append(int(change))
            self._seen_set.add(int(change))
        if self.metrics is not None and "t" in message:
            self.metrics.invalidation_lag.observe(max(0.0, time.time() - message["t"] / 1000))

    async def _listen(self) -> None:
        redis: Redis = self.remote.redis
        while True:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(self.remote.channel)
                # The subscription is live once acknowledged; only then read the sequence.
                while (await pubsub.get_message(timeout=5.0)) is None:
                    pass
                self._flush()
                self._last_seq = int(await redis.get(self.remote.seq_key) or 0)
                self._live.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.apply(orjson.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("cache_invalidation_channel_lost", exc_info=True)
                if self.metrics is not None:
                    self.metrics.errors.labels("subscribe").inc()
                self._go_dark()
                await asyncio.sleep(self._reconnect_delay)
            finally:
                # Bounded: closing a pub/sub whose reader was just cancelled can wait on a
                # lock that reader held (redis-py #3941); never let shutdown hang on it.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
