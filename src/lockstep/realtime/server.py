"""The realtime server of one application: lockstep *is* the Centrifugo server its clients
connect to (``/connection/websocket``, ``/connection/uni_sse``), fed by its own commits.

    realtime = Realtime(settings, database, authenticate=my_hook,
                        namespaces=[Namespace("case", authorize=...)],
                        broadcasts=[Broadcast(transactions, "case:{case_id}")])
    realtime.install(app)                      # endpoints; run realtime.lifespan with the app's
    async with database.writer() as session:
        ...
        realtime.publish(session, "case:7", {"status": "closed"})   # sent iff it commits

Guarantees (each has a test): a publication made in a transaction is delivered iff the
transaction commits, after it, in commit order per channel; publications to channels with
history carry gap-free offsets and are kept in the database, so a reconnecting client
recovers exactly what it missed or is told it cannot; other processes' publications arrive
through Redis (when configured) and, whatever happens to Redis, through a periodic read of
the channels' tops (``LOCKSTEP_REALTIME_CHECK_SECONDS``), so no subscriber is left silently
behind. Pings every ``LOCKSTEP_REALTIME_PING_SECONDS``; a client that does not answer in
``LOCKSTEP_REALTIME_PONG_SECONDS`` is closed (3012), one whose token expired and was not
refreshed too (3005).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from lockstep.db import Database
from lockstep.exceptions import ConfigurationError
from lockstep.realtime import history as store
from lockstep.realtime.capture import COMMITTED, Broadcast, Capture, Pending
from lockstep.realtime.channels import (
    Authenticate,
    Channels,
    ConnectRequest,
    Credentials,
    Namespace,
)
from lockstep.realtime.connection import Connection
from lockstep.realtime.hub import Hub
from lockstep.realtime.metrics import RealtimeMetrics
from lockstep.realtime.protocol import (
    EXPIRED,
    NO_PONG,
    PING,
    SHUTDOWN,
    UNRECOVERABLE_POSITION,
    Publication,
)
from lockstep.settings import Settings

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from lockstep.realtime.bridge import Bridge

log = structlog.get_logger("lockstep.realtime")

EXPIRY_GRACE_SECONDS = 25.0
"""How long after its token expired an unrefreshed connection may stay (the SDKs refresh
exactly at the ttl they were given)."""


class Realtime:
    """Realtime delivery for one database (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        namespaces: Iterable[Namespace],
        authenticate: Authenticate,
        broadcasts: Iterable[Broadcast] = (),
        registry: CollectorRegistry | None = None,
        version: str = "lockstep",
    ) -> None:
        self.settings = settings
        self.database = database
        self.channels = Channels(namespaces)
        self._authenticate = authenticate
        self.version = version
        self.metrics = RealtimeMetrics(registry)
        self.hub = Hub(self.metrics, self._fetch)
        self.capture = Capture(self.channels, broadcasts)
        self.capture.append = self._append
        self.capture.install(database)
        database.add_commit_hook(self._after_commit)
        self.connections: set[Connection] = set()
        self.bridge: Bridge | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    # -- publishing --------------------------------------------------------------------------

    def publish(self, session: Any, channel: str, data: Any) -> None:
        """Publish ``data`` (a JSON value) to ``channel`` when ``session``'s transaction
        commits, after what it published before. ``session`` is a ``writer()`` session
        (async or its sync session). ConfigurationError for an undeclared namespace."""
        sync = session if isinstance(session, Session) else session.sync_session
        self.capture.publish(sync, channel, data)

    async def publish_now(self, channel: str, data: Any) -> None:
        """Publish outside any transaction (job progress): to a channel with history this
        is a transaction of its own; to a volatile channel it is delivered at once."""
        namespace = self.channels.require(channel)
        if namespace.history:
            async with self.database.writer() as session:
                self.publish(session, channel, data)
            return
        self._deliver([Publication(channel, orjson.dumps(data), committed_at=time.time())])

    def _append(self, connection: Any, pending: list[Pending]) -> list[Publication]:
        """``Phase.LOG``: offsets and history for the channels that keep it, in order."""
        now = time.time()
        durable = [(p.channel, p.data) for p in pending if self._keeps_history(p.channel)]
        kept = iter(store.append(connection, durable, now) if durable else [])
        return [
            next(kept)
            if self._keeps_history(p.channel)
            else Publication(p.channel, p.data, committed_at=now)
            for p in pending
        ]

    def _keeps_history(self, channel: str) -> bool:
        namespace = self.channels.find(channel)
        return namespace is not None and namespace.history

    async def _after_commit(self, session: Any) -> None:
        publications = session.info.pop(COMMITTED, None)
        if publications:
            self._deliver(publications)

    def _deliver(self, publications: list[Publication]) -> None:
        if not self._started:
            return  # a process serving no one (a CLI import): servers read the channels' tops
        self.hub.submit(publications)
        if self.bridge is not None:
            self.bridge.send(publications)

    # -- what connections ask ----------------------------------------------------------------

    async def authenticate(self, request: ConnectRequest) -> Credentials:
        return await self._authenticate(request)

    async def stream(self, channel: str, after: int | None) -> tuple[str, int, list[Publication]]:
        """``(epoch, top, publications after "after")`` of a channel with history."""
        async with self.database.reader() as session:
            found = await store.tops(session, [channel])
            epoch, top = store.positions(found, channel)
            if after is None or after >= top:
                return epoch, top, []
            limit = min(top - after, self.settings.realtime_history_size)
            return epoch, top, await store.since(session, channel, after, epoch, limit)

    async def _fetch(self, channel: str, after: int, upto: int) -> list[Publication]:
        if upto - after > self.settings.realtime_history_size:
            return []
        async with self.database.reader() as session:
            found = await store.tops(session, [channel])
            epoch, _ = store.positions(found, channel)
            return await store.since(session, channel, after, epoch, upto - after)

    async def history(self, channel: str, params: dict[str, Any]) -> dict[str, Any]:
        """The ``history`` command: ``limit`` publications since a position, or newest first
        with ``reverse``; the current position always."""
        raw_limit = params.get("limit")
        limit = raw_limit if isinstance(raw_limit, int) and raw_limit > 0 else 0
        limit = min(limit, self.settings.realtime_history_size)
        since = params.get("since") if isinstance(params.get("since"), dict) else None
        async with self.database.reader() as session:
            epoch, top = store.positions(await store.tops(session, [channel]), channel)
            pubs: list[Publication] = []
            if limit and since is not None:
                after = int(since.get("offset") or 0)
                if since.get("epoch") and since["epoch"] != epoch:
                    raise UNRECOVERABLE_POSITION
                pubs = await store.since(session, channel, after, epoch, limit)
            elif limit and params.get("reverse"):
                pubs = await store.latest(session, channel, epoch, limit)
            elif limit:
                pubs = await store.since(session, channel, max(0, top - limit), epoch, limit)
        return {"publications": [p.to_json() for p in pubs], "epoch": epoch, "offset": top}

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        if self.bridge is not None:
            return await self.bridge.presence_stats(channel)
        return self.hub.counts(channel)

    async def presence(self, channel: str) -> dict[str, str]:
        if self.bridge is not None:
            return await self.bridge.presence(channel)
        return {c.id: c.user for c in self.hub.channels.get(channel, {})}

    def stats(self) -> dict[str, Any]:
        """This process's connections and, per channel, subscribed clients and users."""
        return {
            "connections": len(self.connections),
            "channels": {
                name: {"clients": clients, "users": users}
                for name in sorted(self.hub.channels)
                for clients, users in [self.hub.counts(name)]
            },
        }

    def register(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.metrics.connections.labels(connection.transport).inc()

    def forget(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.metrics.connections.labels(connection.transport).dec()

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start delivery, pings, the check of channel tops, history trimming and, with
        ``LOCKSTEP_REDIS_URL``, the bridge to other processes."""
        if self._started:
            return
        self._started = True
        self.hub.start()
        if self.settings.redis_url:
            try:
                from lockstep.realtime.bridge import Bridge  # the redis extra, on first use
            except ImportError as exc:
                raise ConfigurationError(
                    "LOCKSTEP_REDIS_URL is set but Redis support is not installed: "
                    "pip install 'lockstep[redis]'"
                ) from exc

            self.bridge = Bridge.from_settings(self.settings, self)
            await self.bridge.start()
        for loop in (self._keepalive, self._check_tops, self._trim_history):
            task = asyncio.create_task(loop(), name=f"lockstep-realtime{loop.__name__}")
            self._tasks.append(task)

    async def stop(self) -> None:
        for connection in list(self.connections):
            connection.close(SHUTDOWN)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.bridge is not None:
            await self.bridge.stop()
            self.bridge = None
        await self.hub.stop()
        self._started = False

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def install(self, app: Any, *, prefix: str = "/connection") -> None:
        """Serve ``{prefix}/websocket`` and ``{prefix}/uni_sse`` on ``app`` (Starlette or
        FastAPI); run :meth:`lifespan` in the app's lifespan."""
        from starlette.routing import Route, WebSocketRoute

        from lockstep.realtime.transports import sse_endpoint, websocket_endpoint

        app.router.routes[0:0] = [
            WebSocketRoute(f"{prefix}/websocket", _App(websocket_endpoint(self))),
            Route(f"{prefix}/uni_sse", _App(sse_endpoint(self)), methods=["GET", "POST"]),
        ]

    async def _keepalive(self) -> None:
        """Ping every connection, close those that did not answer the last ping or whose
        token expired unrefreshed."""
        ping = self.settings.realtime_ping_seconds
        pong = self.settings.realtime_pong_seconds
        tick = min(ping, pong) / 2
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            wall = time.time()
            send_ping = now - last_ping >= ping
            if send_ping:
                last_ping = now
            for connection in list(self.connections):
                if connection.ping_sent and now - connection.ping_sent > pong:
                    connection.close(NO_PONG)
                    continue
                expires = connection.expires_at
                if expires is not None and wall > expires + EXPIRY_GRACE_SECONDS:
                    connection.close(EXPIRED)
                    continue
                if send_ping and connection.send(PING) and not connection.uni:
                    connection.ping_sent = connection.ping_sent or now

    async def check_tops(self) -> int:
        """Deliver what this process's subscribers missed (a lost Redis message, a process
        that died before sending, no Redis at all): read the tops of their channels and
        fetch anything beyond what was delivered. Returns how many were fetched."""
        channels = [c for c in self.hub.channels if c in self.hub.tops]
        if not channels:
            return 0
        async with self.database.reader() as session:
            found = await store.tops(session, channels)
        behind = [(c, top) for c, (_, top) in found.items() if top > self.hub.tops.get(c, top)]
        fetched = 0
        for channel, top in behind:
            local = self.hub.tops.get(channel)
            if local is None or top <= local:
                continue
            missing = await self._fetch(channel, local, top)
            if not missing:  # gone from history: they resubscribe, and recover or reload
                self.hub.lost(channel, top)
                continue
            fetched += len(missing)
            self.hub.submit(missing)
        return fetched

    async def _check_tops(self) -> None:
        while True:
            await asyncio.sleep(self.settings.realtime_check_seconds)
            try:
                await self.check_tops()
            except Exception as exc:  # the database may be away: look again next time
                log.warning("realtime_check_failed", error=repr(exc))

    async def trim(self) -> int:
        """Apply the history limits (size and age) now; returns the rows deleted."""
        async with self.database.writer() as session:
            return await store.trim(
                session,
                size=self.settings.realtime_history_size,
                older_than=dt.timedelta(seconds=self.settings.realtime_history_seconds),
            )

    async def _trim_history(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.settings.realtime_history_seconds))
            try:
                await self.trim()
            except Exception as exc:
                log.warning("realtime_trim_failed", error=repr(exc))


class _App:
    """An ASGI app Starlette's routes take as it is (a plain function would be wrapped as a
    request handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
