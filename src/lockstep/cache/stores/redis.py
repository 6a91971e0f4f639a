"""Version stamps and values in Redis (scale-out mode), each operation one Lua call.

Keys share one hash tag (``{prefix}``) so the scripts also run on a Redis Cluster node.

* Stamp values come from one counter (``clock``); a stamp key that is missing (never bumped,
  expired, evicted) is created with a fresh value, so eviction can cost misses but can never
  revive an old value. If the clock itself is evicted, a new generation is drawn and every
  key and ETag changes with it.
* A bump also increments a sequence number and publishes ``{seq, change, keys}`` on the
  invalidation channel; processes that mirror stamps locally apply it, and flush everything
  when they see a gap in the sequence.
* A value is stored only if the stamps it was computed under are still current (CAS).
* When a bump fails (Redis unreachable), the store draws a new generation as soon as Redis
  answers again, so no value cached before the outage is served after it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from lockstep.cache.stores.base import StampSnapshot

_READ = """
local clock = KEYS[#KEYS - 1]
redis.call('HSETNX', clock, 'gen', ARGV[1])
local gen = redis.call('HGET', clock, 'gen')
local out = {gen, redis.call('GET', KEYS[#KEYS]) or '0'}
for i = 1, #KEYS - 2 do
  local v = redis.call('GET', KEYS[i])
  if not v then
    v = tostring(redis.call('HINCRBY', clock, 'n', 1))
    redis.call('SET', KEYS[i], v, 'EX', ARGV[2])
  end
  out[i + 2] = v
end
return out
"""

_BUMP = """
local n = #KEYS
local clock, seqkey, marker = KEYS[n - 2], KEYS[n - 1], KEYS[n]
if ARGV[7] == '1' and redis.call('EXISTS', marker) == 1 then
  return 0
end
redis.call('HSETNX', clock, 'gen', ARGV[1])
for i = 1, n - 3 do
  redis.call('SET', KEYS[i], tostring(redis.call('HINCRBY', clock, 'n', 1)), 'EX', ARGV[2])
end
redis.call('SET', marker, '1', 'EX', ARGV[8])
local seq = redis.call('INCR', seqkey)
redis.call('PUBLISH', ARGV[3], cjson.encode({seq = seq, change = tonumber(ARGV[4]),
  t = tonumber(ARGV[5]), keys = cjson.decode(ARGV[6])}))
return seq
"""

_HOLD_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RESET = """
redis.call('HSET', KEYS[1], 'gen', ARGV[1])
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], cjson.encode({seq = seq, flush = true, t = tonumber(ARGV[3])}))
return seq
"""

_SET_IF_CURRENT = """
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[i + 1] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# How long "change set N was applied" is remembered, so the relay never bumps it twice.
APPLIED_MARKER_SECONDS = 86_400

# Beyond this many keys a bump message just says "flush": receivers drop their mirror.
MAX_KEYS_PER_MESSAGE = 500


class RedisStampStore:
    """Stamps in Redis, shared by every process of a deployment."""

    def __init__(
        self, redis: Redis, *, prefix: str = "lockstep", stamp_ttl: int = 7 * 86_400
    ) -> None:
        self.redis = redis
        self.prefix = "{" + prefix + "}"
        self.channel = f"{self.prefix}:invalidations"
        self.seq_key = f"{self.prefix}:seq"
        self._clock = f"{self.prefix}:clock"
        self._ttl = stamp_ttl
        self._read = redis.register_script(_READ)
        self._bump = redis.register_script(_BUMP)
        self._reset = redis.register_script(_RESET)
        self._hold_lease = redis.register_script(_HOLD_LEASE)
        self.needs_reset = False
        self._recovery: asyncio.Task[None] | None = None

    def _key(self, key: str) -> str:
        return f"{self.prefix}:st:{key}"

    async def _recover(self) -> None:
        if self.needs_reset:
            await self._reset(
                keys=[self._clock, self.seq_key],
                args=[uuid.uuid4().hex[:10], self.channel, int(time.time() * 1000)],
            )
            self.needs_reset = False

    async def read_with_seq(self, keys: Sequence[str]) -> tuple[StampSnapshot, int]:
        """The stamps and the invalidation sequence number they are current as of."""
        await self._recover()
        result: list[Any] = await self._read(
            keys=[*(self._key(k) for k in keys), self._clock, self.seq_key],
            args=[uuid.uuid4().hex[:10], self._ttl],
        )
        decoded = [v.decode() if isinstance(v, bytes) else str(v) for v in result]
        return StampSnapshot(decoded[0], tuple(decoded[2:])), int(decoded[1])

    async def read(self, keys: Sequence[str]) -> StampSnapshot:
        snapshot, _ = await self.read_with_seq(keys)
        return snapshot

    async def bump(
        self, keys: Collection[str], change_id: int, *, only_if_unapplied: bool = False
    ) -> bool:
        """Bump ``keys`` for change set ``change_id`` and mark it applied (for a day).
        With ``only_if_unapplied`` (the relay) nothing happens if it was applied already.
        Returns whether it bumped."""
        try:
            await self._recover()
            listed = sorted(keys) if len(keys) <= MAX_KEYS_PER_MESSAGE else ["*"]
            seq = await self._bump(
                keys=[
                    *(self._key(k) for k in keys),
                    self._clock,
                    self.seq_key,
                    f"{self.prefix}:applied:{change_id}",
                ],
                args=[
                    uuid.uuid4().hex[:10],
                    self._ttl,
                    self.channel,
                    change_id,
                    int(time.time() * 1000),
                    orjson.dumps(listed).decode(),
                    "1" if only_if_unapplied else "0",
                    APPLIED_MARKER_SECONDS,
                ],
            )
        except Exception:
            # Values cached before this failure may now be stale: retire them all as soon
            # as Redis is back (a new generation), rather than trusting them. Keep trying in
            # the background so other processes' mirrors are flushed even if this one idles.
            self.needs_reset = True
            if self._recovery is None or self._recovery.done():
                self._recovery = asyncio.create_task(self._recover_until_done())
            raise
        return bool(seq)

    async def hold_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take or renew the lease ``name`` for ``holder``; False while another holds it."""
        held = await self._hold_lease(keys=[f"{self.prefix}:lease:{name}"], args=[holder, ttl_ms])
        return bool(held)

    async def load(self, name: str) -> str | None:
        value: Any = await self.redis.get(f"{self.prefix}:state:{name}")
        return value.decode() if isinstance(value, bytes) else value

    async def save(self, name: str, value: str) -> None:
        await self.redis.set(f"{self.prefix}:state:{name}", value)

    async def _recover_until_done(self, first_delay: float = 0.2, max_delay: float = 5.0) -> None:
        delay = first_delay
        while self.needs_reset:
            await asyncio.sleep(delay)
            try:
                await self._recover()
            except Exception:  # still unreachable; the next attempt waits longer
                delay = min(delay * 2, max_delay)


class RedisValueStore:
    """Serialized values in Redis, written with a compare-and-set against their stamps."""

    def __init__(self, redis: Redis, stamps: RedisStampStore) -> None:
        self.redis = redis
        self._stamps = stamps
        self._set = redis.register_script(_SET_IF_CURRENT)

    def _key(self, key: str) -> str:
        return f"{self._stamps.prefix}:v:{key}"

    async def get(self, key: str) -> bytes | None:
        value: Any = await self.redis.get(self._key(key))
        return value if value is None or isinstance(value, bytes) else str(value).encode()

    async def set_if_current(
        self, key: str, value: bytes, ttl: float, stamp_keys: Sequence[str], snapshot: StampSnapshot
    ) -> bool:
        stored = await self._set(
            keys=[self._key(key), *(self._stamps._key(k) for k in stamp_keys)],
            args=[value, int(ttl * 1000), *snapshot.values],
        )
        return bool(stored)

    async def delete(self, key: str) -> None:
        await self.redis.delete(self._key(key))
