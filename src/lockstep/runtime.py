"""The composition root: one object that wires the change feed, the cache and HTTP caching
for an application, choosing in-process or Redis backends from :class:`Settings`.

    lockstep = Lockstep(settings, database, Tracking(Base.metadata, scopes=["organization_id"]))
    app = FastAPI(lifespan=lockstep.lifespan)
    lockstep.install(app)                  # read-your-writes tokens
    @app.get("/items/{item_id}")
    @lockstep.http.cached(depends=lambda item_id: [Row("items", item_id)], vary=...)
    async def get_item(...): ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.types import Scope

from lockstep.cache import (
    Cache,
    CacheMetrics,
    MemoryStampStore,
    MirroredStampStore,
    RedisStampStore,
    RedisValueStore,
)
from lockstep.cache.relay import InvalidationRelay
from lockstep.changes import Changes, ChangeSet, Tracking
from lockstep.db import Database
from lockstep.http.caching import HttpCache
from lockstep.http.consistency import ConsistencyMiddleware
from lockstep.settings import Settings


class Lockstep:
    """Change feed + exact cache + HTTP validators for one database.

    Embedded mode (no ``LOCKSTEP_REDIS_URL``): stamps and values in this process. Scale-out
    mode: stamps and values in Redis, with a local mirror kept coherent over pub/sub (started
    by :meth:`lifespan`, or :meth:`start` / :meth:`stop`).

    ``identify(scope)``, if given, must fully authenticate a raw request and return what the
    cached routes' ``vary`` returns for its caller (or None); it lets private cached answers
    be served before routing (see docs/cache.md).
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        tracking: Tracking,
        *,
        namespace: str = "lockstep",
        registry: CollectorRegistry | None = None,
        identify: Callable[[Scope], Hashable | None] | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.changes = Changes(database, tracking)
        # One registry for the app: pass it to install_observability so /metrics shows both.
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = CacheMetrics(self.registry)
        self.redis: Redis | None = None
        self._mirror: MirroredStampStore | None = None
        if settings.redis_url:
            # One attempt per call, bounded by redis_timeout: when Redis is down, requests
            # fall through to the database quickly instead of waiting out retries.
            self.redis = Redis.from_url(
                settings.redis_url,
                socket_timeout=settings.redis_timeout,
                socket_connect_timeout=settings.redis_timeout,
                retry=Retry(NoBackoff(), 0),
            )
            remote = RedisStampStore(self.redis, prefix=namespace)
            self._mirror = MirroredStampStore(remote, metrics=self.metrics)
            self.cache = Cache(
                self._mirror,
                l2=RedisValueStore(self.redis, remote),
                tracking=tracking,
                namespace=namespace,
                metrics=self.metrics,
                fail_closed=settings.cache_fail_closed,
            )
            self._mirror.on_flush = self.cache.clear_local
            self.relay: InvalidationRelay | None = InvalidationRelay(
                self.changes.feed,
                remote,
                hub=self.changes.hub,
                poll_interval=settings.feed_poll_seconds,
                metrics=self.metrics,
            )
        else:
            self.relay = None
            self.cache = Cache(
                MemoryStampStore(), tracking=tracking, namespace=namespace, metrics=self.metrics
            )
        self.changes.hub.subscribe(self.cache.invalidate)
        self.http = HttpCache(self.cache, identify=identify)
        self._local_ids: deque[int] = deque(maxlen=50_000)
        self._follower: asyncio.Task[None] | None = None
        self.changes.hub.subscribe(self._remember_local)

    async def _remember_local(self, changeset: ChangeSet) -> None:
        self._local_ids.append(changeset.id)

    async def _follow_other_processes(self) -> None:
        """Embedded mode: writes by other processes (a CLI import next to the server) reach
        this process's cache through the change log, within one poll interval."""
        feed = self.changes.feed
        head = await feed.head()
        async for changeset, _ in feed.follow(head, poll_interval=self.settings.feed_poll_seconds):
            if changeset.id not in self._local_ids:
                await self.cache.invalidate(changeset)

    def install(self, app: FastAPI) -> None:
        """Make this runtime the app's (for ``@cached`` routes) and add the read-your-writes
        middleware. Call it before ``install_observability``."""
        app.state.lockstep = self
        app.add_middleware(ConsistencyMiddleware)

    async def start(self) -> None:
        """Start the background work: in Redis mode the stamp mirror and the invalidation
        relay; in embedded mode the follower of other processes' writes."""
        if self._follower is not None:
            return
        if self._mirror is not None:
            await self._mirror.start()
        if self.relay is not None:
            # The relay's first step may have to draw a new generation (no saved cursor):
            # take it before serving, so it cannot retire what the first requests cached.
            cursor = None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.settings.redis_timeout * 4):
                    cursor, _ = await self.relay.step(None)
            self._follower = asyncio.create_task(self.relay.run(cursor))
        else:
            self._follower = asyncio.create_task(self._follow_other_processes())

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._follower
            self._follower = None
        if self._mirror is not None:
            await self._mirror.stop()
        if self.redis is not None:
            await self.redis.aclose()

    async def ping_redis(self) -> None:
        """A readiness check: raises if Redis does not answer."""
        if self.redis is not None:
            await self.redis.ping()

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()
