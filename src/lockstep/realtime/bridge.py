"""Publications between processes over Redis pub/sub, and presence across them (the
``redis`` extra: imported on first use).

Guarantees:

* Every publication this process commits is sent on one Redis channel after commit, in
  order; every other process hands it to its hub (a process skips its own). Offsets make
  duplicates harmless and gaps visible: the hub fills a gap from the database.
* A lost subscription (Redis restarted, killed, unreachable, or silent past a few
  timeouts: a PING unanswered) is noticed and rebuilt; once it is live again the process
  reads its channels' tops from the database and delivers what it missed, and tells the
  subscribers of volatile channels (no history to recover from) to resubscribe (2500). No
  subscriber is left silently behind; while Redis is away, the periodic check of tops keeps
  channels with history flowing.
* Presence: each process keeps its subscribers per channel in one Redis hash field, written
  when they change (at most once a second) with a liveness key; a process that dies drops
  out when its key expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lockstep.realtime.protocol import Publication
from lockstep.settings import Settings

if TYPE_CHECKING:
    from lockstep.realtime.server import Realtime

log = structlog.get_logger("lockstep.realtime")

ALIVE_SECONDS = 5


def encode(origin: str, publications: list[Publication]) -> bytes:
    """One Redis message: a JSON header line, then each publication's data on its own line
    (JSON written by orjson has no raw newline)."""
    header = [origin, [[p.channel, p.offset, p.epoch, p.committed_at] for p in publications]]
    return b"\n".join([orjson.dumps(header), *(p.data for p in publications)])


def decode(message: bytes) -> tuple[str, list[Publication]]:
    lines = message.split(b"\n")
    origin, heads = orjson.loads(lines[0])
    return str(origin), [
        Publication(str(c), data, int(o), str(e), float(t))
        for (c, o, e, t), data in zip(heads, lines[1:], strict=True)
    ]


class Bridge:
    """This process's link to the others through Redis (see the module doc)."""

    def __init__(self, redis: Redis, server: Realtime, *, prefix: str, timeout: float) -> None:
        self.redis = redis
        self.server = server
        self.origin = uuid.uuid4().hex[:12]
        self.topic = f"{prefix}:realtime"
        self.presence_key = f"{prefix}:realtime:presence"
        self.timeout = timeout
        self.live = asyncio.Event()
        self.lost = 0
        self._outbox: asyncio.Queue[list[Publication]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._presence_written: bytes = b""

    @classmethod
    def from_settings(cls, settings: Settings, server: Realtime) -> Bridge:
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout * 4,
            socket_connect_timeout=settings.redis_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(redis, server, prefix="lockstep", timeout=settings.redis_timeout)

    def send(self, publications: list[Publication]) -> None:
        self._outbox.put_nowait(publications)

    async def start(self) -> None:
        for run in (self._send_loop, self._receive_loop, self._presence_loop):
            self._tasks.append(asyncio.create_task(run()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout * 4):
                await self.live.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.redis.hdel(self.presence_key, self.origin)
        await self.redis.aclose()

    async def _send_loop(self) -> None:
        while True:
            batch = await self._outbox.get()
            while not self._outbox.empty():  # what queued meanwhile goes in the same message
                batch = batch + self._outbox.get_nowait()
            message = encode(self.origin, batch)
            for attempt in (1, 2):  # a pooled connection Redis dropped fails once, then reconnects
                try:
                    await self.redis.publish(self.topic, message)
                    break
                except Exception as exc:  # the others catch up from the database
                    if attempt == 2:
                        log.warning("realtime_bridge_send_failed", error=repr(exc))

    async def _receive_loop(self) -> None:
        while True:
            try:
                await self._receive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.live.is_set():
                    self.lost += 1
                    log.warning("realtime_bridge_lost", error=repr(exc))
                self.live.clear()
            await asyncio.sleep(min(1.0, self.timeout))

    async def _receive(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(self.topic)
            while (await pubsub.get_message(timeout=self.timeout * 4)) is None:
                pass  # the subscribe confirmation
            recovering = self.lost > 0
            self.live.set()
            if recovering:
                await self._recover()
            waiting_since = 0.0
            while True:
                message = await pubsub.get_message(timeout=self.timeout)
                if message is None:
                    now = time.monotonic()
                    if waiting_since and now - waiting_since > self.timeout * 4:
                        raise ConnectionError("no answer to PING on the realtime channel")
                    if not waiting_since:
                        waiting_since = now
                        await pubsub.ping()
                    continue
                waiting_since = 0.0
                if message.get("type") != "message":
                    continue
                origin, publications = decode(message["data"])
                if origin != self.origin:
                    self.server.hub.submit(publications)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _recover(self) -> None:
        """After a lost subscription: what channels with history missed comes from the
        database; subscribers of volatile channels resubscribe."""
        await self.server.check_tops()
        for channel, subscribers in list(self.server.hub.channels.items()):
            namespace = self.server.channels.find(channel)
            if namespace is not None and not namespace.history:
                for subscriber in list(subscribers.values()):
                    subscriber.connection.resubscribe(channel)

    # -- presence ----------------------------------------------------------------------------

    def _snapshot(self) -> bytes:
        hub = self.server.hub
        return orjson.dumps(
            {ch: {c.id: c.user for c in subs} for ch, subs in sorted(hub.channels.items())}
        )

    async def _presence_loop(self) -> None:
        while True:
            try:
                snapshot = self._snapshot()
                async with self.redis.pipeline(transaction=False) as pipe:
                    if snapshot != self._presence_written:
                        pipe.hset(self.presence_key, self.origin, snapshot)
                    pipe.set(f"{self.presence_key}:{self.origin}", 1, ex=ALIVE_SECONDS)
                    await pipe.execute()
                self._presence_written = snapshot
            except Exception as exc:
                log.debug("realtime_presence_failed", error=repr(exc))
            await asyncio.sleep(1.0)

    async def _everyone(self, channel: str) -> dict[str, str]:
        own = {c.id: c.user for c in self.server.hub.channels.get(channel, {})}
        try:
            found = await self.redis.hgetall(self.presence_key)
            snapshots = {_text(k): v for k, v in found.items()}
            origins = [o for o in snapshots if o != self.origin]
            keys = [f"{self.presence_key}:{o}" for o in origins]
            alive = await self.redis.mget(keys) if keys else []
        except Exception:
            return own  # Redis away: this process's own is all it knows
        for origin, flag in zip(origins, alive, strict=True):
            if flag is None:
                continue
            clients: dict[str, Any] = orjson.loads(snapshots[origin]).get(channel, {})
            own.update({str(k): str(v) for k, v in clients.items()})
        return own

    async def presence(self, channel: str) -> dict[str, str]:
        return await self._everyone(channel)

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        clients = await self._everyone(channel)
        return len(clients), len(set(clients.values()))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
