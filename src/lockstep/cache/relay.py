"""The invalidation relay: re-applies, from the change log, bumps a writer never made.

A writer bumps Redis stamps right after its commit. If that process dies in between (or
Redis was briefly unreachable for it), the committed change would never invalidate anything.
One process at a time (a Redis lease) follows the change log and bumps every change set that
is not marked applied; the writer's own bump marks it, so normally the relay does nothing but
check. Its cursor is kept in Redis, so a restarted deployment resumes where it stopped.

When that cursor is gone (first start, ``FLUSHALL``, eviction) or too old for the log, the
relay cannot know which change sets it would skip: it starts at the head of the log and
draws a new generation first, which retires everything cached before that moment, so no
skipped change set can leave a stale value behind.
"""

from __future__ import annotations

import asyncio
import uuid

import structlog

from lockstep.cache.breaker import CircuitOpenError
from lockstep.cache.dependencies import bumps
from lockstep.cache.metrics import CacheMetrics
from lockstep.cache.stores.redis import RedisStampStore
from lockstep.changes import ChangeFeed, ChangeHub, Cursor
from lockstep.exceptions import CursorExpiredError

log = structlog.get_logger("lockstep.cache")

LEASE = "relay"
CURSOR = "relay.cursor"


class InvalidationRelay:
    """Run :meth:`run` in every process; only the lease holder works."""

    def __init__(
        self,
        feed: ChangeFeed,
        stamps: RedisStampStore,
        *,
        hub: ChangeHub | None = None,
        poll_interval: float = 1.0,
        metrics: CacheMetrics | None = None,
    ) -> None:
        self.feed = feed
        self.stamps = stamps
        self.hub = hub
        self.poll_interval = poll_interval
        self.metrics = metrics
        self.holder = uuid.uuid4().hex
        self.relayed = 0

    async def _start_cursor(self) -> Cursor:
        saved = await self.stamps.load(CURSOR)
        if saved:
            try:
                await self.feed.since(saved, limit=1)
                return Cursor.decode(saved)
            except CursorExpiredError:
                log.warning("relay_cursor_expired")
        # Read the head before retiring: a change set committed after the head is relayed,
        # one committed before the reset is covered by it.
        head = await self.feed.head()
        await self.stamps.reset("relay")
        return head

    async def step(self, cursor: Cursor | None) -> tuple[Cursor | None, int]:
        """One round: if this process holds the lease, relay what the log has after
        ``cursor``. Returns the new cursor (None when not the holder) and how many change
        sets were read."""
        lease_ms = int(max(self.poll_interval * 5, 5) * 1000)
        if not await self.stamps.hold_lease(LEASE, self.holder, lease_ms):
            return None, 0
        if cursor is None:
            cursor = await self._start_cursor()
        sets, cursor = await self.feed.since(cursor, limit=500)
        for changeset in sets:
            keys = bumps(changeset)
            if keys and await self.stamps.bump(keys, changeset.id, only_if_unapplied=True):
                self.relayed += 1
                log.warning("relay_applied_missed_invalidation", changeset=changeset.id)
        await self.stamps.save(CURSOR, cursor.encode())
        return cursor, len(sets)

    async def run(self, cursor: Cursor | None = None) -> None:
        """Relay until cancelled, from ``cursor`` (a previous :meth:`step`'s) if given."""
        while True:
            woken = self.hub.next_publish() if self.hub is not None else None
            try:
                cursor, read = await self.step(cursor)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, CircuitOpenError):  # an outage: counted by the breaker
                    log.warning("relay_failed", error=repr(exc))
                    if self.metrics is not None:
                        self.metrics.errors.labels("relay").inc()
                cursor, read = None, 0
            if read:
                continue
            if woken is not None:
                await ChangeHub.wait(woken, within=self.poll_interval)
            else:
                await asyncio.sleep(self.poll_interval)
