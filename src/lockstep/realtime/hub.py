"""This process's subscribers, and the one task that hands them publications in order.

Guarantees:

* Publications reach the hub from this process's commits, from other processes (the Redis
  bridge) and from the periodic check of channel tops; one task applies them, so every
  subscriber of a channel sees its offsets in order, each once.
* A channel with history is followed gap-free: a publication beyond the next expected offset
  first brings the missing ones from the database (``fetch``); if they are gone, every
  subscriber of the channel is told to resubscribe (unsubscribe 2500), which recovers or
  says it cannot.
* A subscriber that is still subscribing buffers what arrives (bounded) and replays it
  after its subscribe reply, so nothing falls between the history it read and the live
  stream.
* A publication is encoded once per frame shape, whatever the number of subscribers; the
  publications of a channel that queued while the previous ones were handed out go to each
  subscriber together (one frame on a WebSocket), in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from lockstep.realtime.metrics import RealtimeMetrics
from lockstep.realtime.protocol import Publication

if TYPE_CHECKING:
    from lockstep.realtime.connection import Connection

log = structlog.get_logger("lockstep.realtime")

Fetch = Callable[[str, int, int], Awaitable[list[Publication]]]
"""``fetch(channel, after, upto)``: kept publications ``after+1 .. upto`` (may be fewer)."""

MAX_BUFFERED = 10_000
"""Publications a subscribing client may buffer before it is closed as slow."""


@dataclass(slots=True)
class Subscriber:
    """One connection's subscription to one channel: its position (last offset sent) and,
    while its subscribe is under way, what arrived meanwhile."""

    connection: Connection
    position: int = 0
    buffer: list[Publication] | None = field(default_factory=list)
    server_side: bool = False


class Hub:
    """Subscribers by channel, and the task delivering to them (see the module doc)."""

    def __init__(self, metrics: RealtimeMetrics, fetch: Fetch) -> None:
        self.metrics = metrics
        self.fetch = fetch
        self.channels: dict[str, dict[Connection, Subscriber]] = {}
        self.tops: dict[str, int] = {}
        self._queue: asyncio.Queue[list[Publication]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    # -- subscribers -------------------------------------------------------------------------

    def add(self, channel: str, subscriber: Subscriber) -> None:
        self.channels.setdefault(channel, {})[subscriber.connection] = subscriber
        self.metrics.subscriptions.inc()

    def remove(self, channel: str, connection: Connection) -> None:
        subscribers = self.channels.get(channel)
        if subscribers is None or subscribers.pop(connection, None) is None:
            return
        self.metrics.subscriptions.dec()
        if not subscribers:
            del self.channels[channel]
            self.tops.pop(channel, None)

    def subscribed(self, channel: str, subscriber: Subscriber, position: int) -> None:
        """The subscribe reply went out at ``position``: replay what was buffered."""
        buffered, subscriber.buffer = subscriber.buffer or [], None
        subscriber.position = position
        if position and channel not in self.tops:
            self.tops[channel] = position
        if buffered:
            self._send(subscriber, buffered, consecutive=False)

    def counts(self, channel: str) -> tuple[int, int]:
        """(clients, distinct users) subscribed to ``channel`` in this process."""
        subscribers = self.channels.get(channel, {})
        return len(subscribers), len({c.user for c in subscribers})

    # -- delivery ----------------------------------------------------------------------------

    def submit(self, publications: list[Publication]) -> None:
        """Queue ``publications`` (of one commit, in order) for delivery; never blocks."""
        if publications:
            self._queue.put_nowait(publications)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lockstep-realtime-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def idle(self) -> None:
        """Return once everything submitted so far has been delivered (tests, shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            batches = [await self._queue.get()]
            while not self._queue.empty():  # what queued while the last fan-out ran
                batches.append(self._queue.get_nowait())
            try:
                await self.deliver_all([p for batch in batches for p in batch])
            except Exception:  # one bad batch must not stop delivery for every channel
                log.exception("realtime_delivery_failed")
            finally:
                for _ in batches:
                    self._queue.task_done()

    async def deliver(self, publication: Publication) -> None:
        """Hand ``publication`` to this process's subscribers of its channel, in order."""
        await self.deliver_all([publication])

    async def deliver_all(self, publications: list[Publication]) -> None:
        """Hand ``publications`` (in commit order per channel) to this process's
        subscribers: a channel's publications go to each of its subscribers together (one
        WebSocket frame), so a burst of commits costs one send per subscriber, not one per
        publication."""
        ready: dict[str, list[Publication]] = {}
        for publication in publications:
            channel = publication.channel
            subscribers = self.channels.get(channel)
            if not subscribers:
                continue
            if publication.offset:
                top = self.tops.get(channel)
                if top is None:
                    live = [s.position for s in subscribers.values() if s.buffer is None]
                    top = min(live) if live else publication.offset - 1
                if publication.offset <= top:
                    continue
                if publication.offset > top + 1:
                    self._flush(ready)  # what came before the gap goes out before it
                    filled = await self._fill(channel, top, publication)
                    if not filled or not self.channels.get(channel):
                        continue
                self.tops[channel] = publication.offset
            ready.setdefault(channel, []).append(publication)
        self._flush(ready)

    def _flush(self, ready: dict[str, list[Publication]]) -> None:
        for channel, publications in ready.items():
            subscribers = self.channels.get(channel)
            if subscribers:
                self._fan_out(publications, subscribers)
        ready.clear()

    def _fan_out(
        self, publications: list[Publication], subscribers: dict[Connection, Subscriber]
    ) -> None:
        """Send ``publications`` (consecutive, of one channel) to each subscriber."""
        sent = 0
        for subscriber in list(subscribers.values()):
            sent += self._send(subscriber, publications)
        self.metrics.delivered.inc(sent)
        now = time.time()
        for publication in publications:
            if publication.committed_at:
                self.metrics.latency.observe(max(0.0, now - publication.committed_at))

    def _send(
        self, subscriber: Subscriber, publications: list[Publication], *, consecutive: bool = True
    ) -> int:
        """Queue what of ``publications`` (of one channel, in order; ``consecutive``: their
        offsets follow each other) follows ``subscriber``'s position: those at or before it
        are skipped (sent already), a gap makes it resubscribe."""
        if subscriber.buffer is not None:
            for publication in publications:
                if len(subscriber.buffer) >= MAX_BUFFERED:
                    subscriber.connection.slow()
                    return 0
                subscriber.buffer.append(publication)
            return 0
        position = subscriber.position
        first = publications[0].offset
        if not first or (consecutive and first == position + 1):
            # the usual case, checked once: volatile, or exactly the next offsets
            admitted = publications
            if first:
                subscriber.position = publications[-1].offset
        else:
            admitted = []
            for publication in publications:
                offset = publication.offset
                if offset <= position:
                    continue
                if offset > position + 1:
                    sent = subscriber.connection.push(admitted) if admitted else 0
                    subscriber.position = position
                    subscriber.connection.resubscribe(publication.channel)
                    return sent
                position = offset
                admitted.append(publication)
            subscriber.position = position
            if not admitted:
                return 0
        return subscriber.connection.push(admitted)

    def lost(self, channel: str, top: int) -> None:
        """The channel reached ``top`` and history no longer holds what this process's
        subscribers missed: they resubscribe (and recover, or learn they cannot)."""
        self.metrics.dropped.inc()
        for subscriber in list(self.channels.get(channel, {}).values()):
            subscriber.connection.resubscribe(channel)
        self.tops[channel] = top

    async def _fill(self, channel: str, top: int, publication: Publication) -> bool:
        """Deliver the offsets between ``top`` and ``publication`` from history first; if
        history no longer has them all, make the channel's subscribers resubscribe (they
        recover ``publication`` too, or learn they cannot) and return False."""
        missing = await self.fetch(channel, top, publication.offset - 1)
        expected = top + 1
        found: list[Publication] = []
        for one in missing:
            if one.offset != expected:
                break
            found.append(one)
            expected += 1
        subscribers = self.channels.get(channel)
        if found and subscribers:
            self._fan_out(found, subscribers)
        if expected == publication.offset:
            return True
        self.lost(channel, publication.offset)
        return False
