"""The composition root: one object that wires the change feed, the cache and HTTP caching
for an application, on the cache backend it is given or, by default, the one
:class:`Settings` choose (in-process, or Redis with ``LOCKSTEP_REDIS_URL``).

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from lockstep.cache import Cache, CacheBackend, CacheMetrics, backend_from_settings, bumps
from lockstep.changes import (
    ChangeHub,
    Changes,
    ChangeSet,
    Cursor,
    Tracking,
    committing_changeset,
)
from lockstep.db import Database, Phase
from lockstep.http.caching import HttpCache, Identify
from lockstep.http.consistency import ConsistencyMiddleware
from lockstep.http.preconditions import pending_if_match, verify_if_match
from lockstep.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis


log = structlog.get_logger("lockstep.runtime")


class Lockstep:
    """Change feed + exact cache + HTTP validators for one database.

    Embedded mode (no ``LOCKSTEP_REDIS_URL``): stamps and values in this process. Scale-out
    mode: stamps and values in Redis, with a local mirror kept coherent over pub/sub (started
    by :meth:`lifespan`, or :meth:`start` / :meth:`stop`). ``backend`` replaces the choice
    made from settings (see :mod:`lockstep.cache.backend`); the runtime starts and stops it.

    ``identify(scope)``, if given, must fully authenticate a raw request and name its caller
    (an identity two requests share only with the same rights), or return None; it lets a
    private cached answer be served before routing to the caller it was made for (see
    docs/cache.md); it may be a coroutine function.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        tracking: Tracking,
        *,
        namespace: str = "lockstep",
        registry: CollectorRegistry | None = None,
        identify: Identify | None = None,
        backend: CacheBackend | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.changes = Changes(database, tracking)
        # One registry for the app: pass it to install_observability so /metrics shows both.
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = CacheMetrics(self.registry)
        if backend is None:
            backend = backend_from_settings(settings, namespace)
        self.backend = backend
        self.cache = Cache(
            self.backend.stamps,
            l2=self.backend.values,
            tracking=tracking,
            namespace=namespace,
            metrics=self.metrics,
            fail_closed=settings.cache_fail_closed,
        )
        self.backend.attach(self.cache, self.changes)
        self.changes.hub.subscribe(self.cache.invalidate)
        self.http = HttpCache(self.cache, identify=identify)
        self._local_ids: deque[int] = deque(maxlen=50_000)
        self._follower: asyncio.Task[None] | None = None
        self._started = False
        self._cursor: Cursor | None = None
        self._catching_up = asyncio.Lock()
        self.changes.hub.subscribe(self._remember_local)
        database.add_phase_hook(Phase.VERIFY, self._verify)
        if self.backend.shared or not database.is_sqlite:
            # Writers that can commit concurrently (PostgreSQL) or in other processes sharing
            # these stamps (Redis) move them before their locks are released, so an If-Match
            # check that takes a lock after a commit sees the stamps of that commit moved.
            # Embedded mode has one writer, whose commit hooks run before the next begins.
            database.add_phase_hook(Phase.ANNOUNCE, self._announce)

    async def _remember_local(self, changeset: ChangeSet) -> None:
        self._local_ids.append(changeset.id)

    async def _verify(self, session: Session) -> None:
        if not self.backend.shared and pending_if_match():
            await self.catch_up()  # what other processes committed (the lock is ours now)
        await verify_if_match(session)

    async def _announce(self, session: Session) -> None:
        changeset = committing_changeset(session)
        if changeset is not None:
            await self.cache.announce(bumps(changeset))

    async def catch_up(self) -> int:
        """Embedded mode: apply to this process's cache what other processes (a CLI import
        next to the server) committed since the last look; returns how many change sets.
        Runs every poll interval, and before an If-Match comparison."""
        async with self._catching_up:
            if self._cursor is None:
                return 0  # not started: this process has cached nothing yet
            applied = 0
            while True:
                sets, self._cursor = await self.changes.feed.since(self._cursor, limit=500)
                for changeset in sets:
                    if changeset.id not in self._local_ids:
                        await self.cache.invalidate(changeset)
                        applied += 1
                if len(sets) < 500:
                    return applied

    async def _follow_other_processes(self) -> None:
        """Embedded mode: writes by other processes reach this process's cache through the
        change log, within one poll interval. A round that fails (the database restarting)
        drops this process's cached values — it may have missed invalidations — and the
        next round resumes from the same cursor: the follower outlives any outage."""
        while True:
            woken = self.changes.hub.next_publish()
            try:
                if self._cursor is None:
                    self._cursor = await self.changes.feed.head()
                await self.catch_up()
            except Exception as exc:  # the database is away: nothing cached may be trusted
                self.cache.clear_local()
                log.warning("feed_follow_failed", error=type(exc).__name__)
            await ChangeHub.wait(woken, within=self.settings.feed_poll_seconds)

    def install(self, app: FastAPI) -> None:
        """Make this runtime the app's (for ``@cached`` routes) and add the read-your-writes
        middleware. Call it before ``install_observability``."""
        app.state.lockstep = self
        app.add_middleware(ConsistencyMiddleware)

    @property
    def redis(self) -> Redis | None:
        """The Redis client of the backend, if it has one."""
        client: Redis | None = getattr(self.backend, "redis", None)
        return client

    async def start(self) -> None:
        """Start the background work: the backend's (in Redis mode the stamp mirror and the
        invalidation relay) and, for stamps that are not shared, the follower of other
        processes' writes."""
        if self._started:
            return
        self._started = True
        await self.backend.start()
        if not self.backend.shared:
            self._follower = asyncio.create_task(self._follow_other_processes())

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._follower
            self._follower = None
        # Also when never started: the backend may hold a client to close.
        self._started = False
        await self.backend.stop()

    async def ping_redis(self) -> None:
        """A readiness check: raises if the cache backend (Redis) does not answer."""
        await self.backend.ping()

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()
