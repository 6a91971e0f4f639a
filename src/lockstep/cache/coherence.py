"""A local mirror of Redis stamps, kept coherent by the invalidation channel.

L1 hits must not pay a Redis round trip (110-170 µs) for the stamps, so each process keeps
the stamps it has read, and drops them when another process's bump is announced.

Correctness rules (each has a test):

* The mirror is used only while subscribed, and only within a **lease**: every heartbeat
  sends PING on the subscribed connection, and its PONG (delivered after every message
  published before it) extends trust to ``send time + lease``. A channel that goes silent
  (a frozen Redis, a network black hole) loses trust within one lease, with no message
  needed; after a whole call timeout without PONG the breaker opens and the channel is
  rebuilt. Trust also needs a closed breaker and no failed bump of this process pending.
* It starts empty at every (re)subscription and learns the generation and sequence number
  only after the subscription is live.
* Every message carries the generation. A new generation, a gap in the sequence, a step
  backwards or an explicit flush drops the whole mirror and the L1 with it (:func:`decide`).
* A value read from Redis is kept only if no message was applied meanwhile, its generation
  is the mirror's, and its sequence number is not older than the mirror's.
* A request carrying a read-your-writes token this process has not seen applied reads its
  stamps from Redis itself, asking Redis to confirm the change was applied there.
* The heartbeat also runs :meth:`RedisStampStore.position` on a normal connection: the
  promise that lets every script notice a stall, and the probe that closes the breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

import orjson
import structlog
from redis.asyncio.client import PubSub

from lockstep.cache.breaker import CircuitOpenError
from lockstep.cache.metrics import CacheMetrics
from lockstep.cache.stores.base import StampSnapshot
from lockstep.cache.stores.redis import RedisStampStore
from lockstep.changes import required_change

log = structlog.get_logger("lockstep.cache")

Action = Literal["ignore", "apply", "flush"]


def decide(
    generation: str | None, last_seq: int | None, floor: int | None, message: Mapping[str, Any]
) -> tuple[Action, str]:
    """What a mirror at (``generation``, ``last_seq``) does with one message, and why.

    ``floor`` is the sequence number read right after subscribing, while no later message
    has been applied (else None): messages at or below it were published before that read
    and are already reflected in what the mirror will read. Pure; the reasons are the
    ``reason`` label of ``lockstep_cache_local_flushes_total``.
    """
    seq = message.get("seq")
    if seq is None:
        # Stamps deleted because Redis refused the bump (out of memory): no sequence number
        # could be taken, the keys are simply gone. Drop them wherever we are.
        return "apply", "unsequenced"
    seq = int(seq)
    if generation is None or message.get("gen") != generation:
        return "flush", "generation"  # lost, rewound, restarted, or a reset: all of it is old
    if message.get("flush"):
        return "flush", str(message.get("reason") or "reset")
    if last_seq is None:
        return "flush", "gap"
    if floor is not None and last_seq == floor and seq <= floor:
        return "ignore", "before_subscription"
    if seq == last_seq + 1:
        return "apply", ""
    if seq <= last_seq:
        return "flush", "backwards"  # the sequence restarted under the same generation
    return "flush", "gap"


class ChannelStalled(Exception):
    """No PONG on the invalidation channel for a whole call timeout."""


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.remote = remote
        self._breaker = remote.breaker
        self.metrics = metrics
        self.on_flush = on_flush
        self.clock = clock
        self._mirror: OrderedDict[str, str] = OrderedDict()
        self._max_keys = max_keys
        self._generation: str | None = None
        self._last_seq: int | None = None
        self._floor: int | None = None
        self._epoch = 0  # moves with every applied message and every flush
        self._lease_until = 0.0
        self._seen: deque[int] = deque(maxlen=10_000)
        self._seen_set: set[int] = set()
        self._live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reconnect_delay = reconnect_delay
        self._received = asyncio.Event()
        self._attempted = asyncio.Event()
        self.received = 0
        self.flushes = 0

    # -- lifecycle --

    async def start(self, wait: float = 5.0) -> None:
        """Subscribe, and wait (up to ``wait`` seconds) for the first attempt to go live. If
        it fails, start anyway: reads go to Redis (or, failing that, the database) until the
        subscription succeeds in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen())
        try:
            async with asyncio.timeout(wait):
                await self._attempted.wait()
        except TimeoutError:
            pass
        if not self._live.is_set():
            log.warning("cache_invalidation_channel_not_live")

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
    def trusted(self) -> bool:
        """Whether reads may be answered from the mirror right now (module docstring)."""
        # Going dark zeroes the lease and forgets the generation, so these also mean live.
        remote = self.remote
        return (
            self._generation is not None
            and self.clock() < self._lease_until
            and remote.breaker.closed
            and not remote.needs_reset
        )

    @property
    def generation(self) -> str | None:
        return self._generation

    @property
    def last_seq(self) -> int | None:
        """The sequence number of the last invalidation applied (None while not subscribed)."""
        return self._last_seq

    async def wait_received(self, count: int) -> None:
        """Return once ``count`` messages have been received since start (for tests and
        tools that must know a published invalidation has been processed here)."""
        while self.received < count:
            await self._received.wait()

    # -- the stamp store interface --

    async def read(self, keys: Sequence[str], *, authoritative: bool = False) -> StampSnapshot:
        wanted = required_change()
        seen = not wanted or wanted in self._seen_set
        generation = self._generation
        # self.trusted, inlined: this is the path of every L1 hit.
        if (
            seen
            and generation is not None
            and not authoritative
            and self.clock() < self._lease_until
            and self._breaker.closed
            and not self.remote.needs_reset
        ):
            mirror = self._mirror
            values = [mirror.get(k) for k in keys]
            if None not in values:
                return StampSnapshot(generation, tuple(v for v in values if v is not None))
        epoch = self._epoch
        snapshot, seq = await self.remote.read_with_seq(keys, confirm=0 if seen else wanted)
        # Keep what we read only if no message was applied while it was in flight (one that
        # was published after the read would otherwise be undone), and it is of our
        # generation and not older than what we applied.
        if (
            self._epoch == epoch
            and self._live.is_set()
            and snapshot.generation == self._generation
            and self._last_seq is not None
            and seq >= self._last_seq
        ):
            mirror = self._mirror
            for key, value in zip(keys, snapshot.values, strict=True):
                mirror[key] = value
            while len(mirror) > self._max_keys:
                mirror.popitem(last=False)
        return snapshot

    async def bump(self, keys: Collection[str], change_id: int | None = None) -> None:
        for key in keys:
            self._mirror.pop(key, None)
        self._epoch += 1
        await self.remote.bump(keys, change_id)

    # -- the invalidation channel --

    def _go_dark(self) -> None:
        self._live.clear()
        self._lease_until = 0.0
        self._flush("channel")
        self._generation = None
        self._last_seq = None
        self._floor = None

    def _go_live(self, generation: str, seq: int, confirmed_at: float) -> None:
        self._flush("subscribed")
        self._generation = generation
        self._last_seq = self._floor = seq
        self._lease_until = confirmed_at + self.remote.lease
        self._live.set()
        self._attempted.set()

    def _flush(self, reason: str) -> None:
        self._mirror.clear()
        self._epoch += 1
        self.flushes += 1
        if self.metrics is not None:
            self.metrics.flushes.labels(reason).inc()
        if self.on_flush is not None:
            self.on_flush()

    def apply(self, message: Mapping[str, Any]) -> None:
        """Apply one invalidation message (public for tests that force a gap)."""
        self.received += 1
        self._received.set()
        self._received = asyncio.Event()
        action, reason = decide(self._generation, self._last_seq, self._floor, message)
        if self.metrics is not None:
            self.metrics.messages.labels(action).inc()
        if action == "ignore":
            return
        keys = message.get("keys") or []
        if action == "flush" or "*" in keys:
            if reason in ("gap", "backwards"):
                log.warning("cache_invalidation_gap", after=self._last_seq, got=message["seq"])
            self._flush(reason or "all")
        else:
            mirror = self._mirror
            for key in keys:
                mirror.pop(key, None)
            self._epoch += 1
        if "seq" in message:
            self._generation = str(message.get("gen"))
            self._last_seq = int(message["seq"])
            self._floor = None
        change = message.get("change")
        if change is not None:
            if len(self._seen) == self._seen.maxlen:
                self._seen_set.discard(self._seen[0])
            self._seen.append(int(change))
            self._seen_set.add(int(change))
        if self.metrics is not None and "t" in message:
            self.metrics.invalidation_lag.observe(max(0.0, time.time() - message["t"] / 1000))

    async def _listen(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, CircuitOpenError):  # an outage: the breaker logged it
                    log.warning("cache_invalidation_channel_lost", error=repr(exc))
                    if self.metrics is not None:
                        self.metrics.errors.labels("subscribe").inc()
            self._attempted.set()
            self._go_dark()
            await asyncio.sleep(self._reconnect_delay)

    async def _session(self) -> None:
        remote = self.remote
        pubsub = remote.redis.pubsub()
        try:
            async with asyncio.timeout(remote.timeout):
                await pubsub.subscribe(remote.channel)
                while True:  # bounded by the timeout around it
                    message = await pubsub.get_message(timeout=remote.timeout)
                    if message is not None and message["type"] == "subscribe":
                        break
            # The subscription is live: anything published from now on reaches us. Only now
            # learn where the sequence is (the call first retires what a failed bump of this
            # process may have hidden, so the mirror never starts on a suspect state).
            sent = self.clock()
            generation, seq = await remote.position(promise=True)
            self._go_live(generation, seq, sent)
            await self._pump(pubsub)
        finally:
            # Bounded: closing a pub/sub whose reader was just cancelled can wait on a
            # lock that reader held (redis-py #3941); never let shutdown hang on it.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _pump(self, pubsub: PubSub) -> None:
        """Deliver messages and keep the lease, until the channel fails or stalls."""
        remote = self.remote
        interval = remote.lease / 4
        pings: deque[float] = deque()
        tick: asyncio.Task[None] | None = None
        next_beat = self.clock()
        try:
            while True:
                now = self.clock()
                if now >= next_beat:
                    async with asyncio.timeout(remote.timeout):
                        await pubsub.ping()
                    pings.append(now)
                    if tick is None or tick.done():
                        tick = asyncio.create_task(self._tick())
                    next_beat = now + interval
                wait = max(0.001, next_beat - self.clock())
                message = await pubsub.get_message(timeout=wait)
                if message is None:
                    # Nothing arrived while we waited, so a missing PONG is Redis's doing,
                    # not this process being busy.
                    if pings and self.clock() - pings[0] > remote.timeout:
                        remote.breaker.trip(since=pings[0])
                        raise ChannelStalled("no PONG on the invalidation channel")
                    continue
                if message["type"] == "pong":
                    if pings:
                        self._lease_until = pings.popleft() + remote.lease
                elif message["type"] == "message":
                    self.apply(orjson.loads(message["data"]))
        finally:
            if tick is not None:
                tick.cancel()

    async def _tick(self) -> None:
        """The heartbeat's call on a normal connection (see the module docstring)."""
        with contextlib.suppress(Exception):  # counted by the breaker; the lease lapses
            await self.remote.position(promise=True)
