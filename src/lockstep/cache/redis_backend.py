"""The Redis cache backend: stamps and values in Redis, a local mirror kept coherent over
pub/sub, a circuit breaker in front of every call, and the invalidation relay (the
``redis`` extra: ``pip install 'lockstep[redis]'``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lockstep.cache.breaker import STATE_VALUES, CircuitBreaker, State
from lockstep.cache.cache import Cache
from lockstep.cache.coherence import MirroredStampStore
from lockstep.cache.metrics import CacheMetrics
from lockstep.cache.relay import InvalidationRelay
from lockstep.cache.stores.base import StampStore, ValueStore
from lockstep.cache.stores.redis import RedisStampStore, RedisValueStore
from lockstep.changes import Changes
from lockstep.settings import Settings

log = structlog.get_logger("lockstep.cache")


class RedisBackend:
    """Stamps and values in Redis, a local stamp mirror kept by the invalidation channel,
    a circuit breaker in front of every call, and the invalidation relay.

    ``timeout`` bounds each call; ``lease`` is how long the mirror trusts itself without a
    heartbeat answer (at most ``timeout``; every process must use the same values). With
    ``owns_client`` :meth:`stop` closes ``redis``.
    """

    shared = True

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = "lockstep",
        timeout: float = 0.5,
        lease: float = 0.25,
        breaker_failures: int = 3,
        breaker_open_seconds: float = 1.0,
        relay_poll_seconds: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        self.redis = redis
        self.breaker = CircuitBreaker(failures=breaker_failures, open_seconds=breaker_open_seconds)
        self.remote = RedisStampStore(
            redis, prefix=namespace, timeout=timeout, lease=lease, breaker=self.breaker
        )
        self.mirror = MirroredStampStore(self.remote)
        self.values: ValueStore | None = RedisValueStore(redis, self.remote)
        self.relay: InvalidationRelay | None = None
        self._relay_poll = relay_poll_seconds
        self._relay_task: asyncio.Task[None] | None = None
        self._owns_client = owns_client

    @property
    def stamps(self) -> StampStore:
        return self.mirror

    @classmethod
    def from_settings(cls, settings: Settings, namespace: str) -> RedisBackend:
        """A backend on ``LOCKSTEP_REDIS_URL`` with a client of its own."""
        # One attempt per call, bounded by redis_timeout: when Redis is down, requests fall
        # through to the database quickly instead of waiting out retries.
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(
            redis,
            namespace=namespace,
            timeout=settings.redis_timeout,
            lease=settings.mirror_lease,
            breaker_failures=settings.redis_breaker_failures,
            breaker_open_seconds=settings.redis_breaker_open_seconds,
            relay_poll_seconds=settings.feed_poll_seconds,
            owns_client=True,
        )

    def attach(self, cache: Cache, changes: Changes) -> None:
        metrics = cache.metrics
        self.remote.metrics = metrics
        self.mirror.metrics = metrics
        self.mirror.on_flush = cache.clear_local
        self.breaker.on_change = _breaker_observer(metrics)
        self.breaker.on_reject = metrics.breaker_rejected.inc
        self.relay = InvalidationRelay(
            changes.feed,
            self.remote,
            hub=changes.hub,
            poll_interval=self._relay_poll,
            metrics=metrics,
        )

    async def start(self) -> None:
        """Return once the mirror is live and the relay has taken its place in the log (or
        either could not, within a few timeouts: they keep trying in the background). So a
        generation the relay must draw at the very first start is drawn before any request."""
        await self.mirror.start()
        if self.relay is not None and self._relay_task is None:
            cursor = None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.remote.timeout * 4):
                    cursor, _ = await self.relay.step(None)
            self._relay_task = asyncio.create_task(self.relay.run(cursor))

    async def stop(self) -> None:
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._relay_task
            self._relay_task = None
        await self.mirror.stop()
        await self.remote.close()
        if self._owns_client:
            await self.redis.aclose()

    async def ping(self) -> None:
        async with asyncio.timeout(self.remote.timeout):
            await self.redis.ping()


def _breaker_observer(metrics: CacheMetrics) -> Callable[[State], None]:
    def observe(state: State) -> None:
        metrics.breaker_state.set(STATE_VALUES[state])
        if state == "open":
            metrics.breaker_opened.inc()
            log.warning("cache_breaker_open")
        elif state == "closed":
            log.warning("cache_breaker_closed")

    return observe
