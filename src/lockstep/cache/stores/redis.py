"""Version stamps and values in Redis (scale-out mode), each operation one Lua call.

Keys share one hash tag (``{prefix}``) so the scripts also run on a Redis Cluster node.

Guarantees (each has a test):

* **Values are never reused.** Stamp values come from one counter in the ``clock`` hash and
  carry the generation (``<n>@<generation>``); a stamp key that is missing, or holds a value
  of another generation, is read as a fresh value. Eviction, expiry or deletion of stamp keys
  costs misses, never a stale hit.
* **Lost or rewound state retires everything.** The ``clock`` hash holds the generation, the
  invalidation sequence number and the id of the Redis server process (``run_id``) that
  wrote it. Every script first checks it, and draws a new generation (part of every key and
  ETag), announcing it on the channel, when the hash is gone (``DEL``, ``FLUSHALL``,
  eviction), was written by another server process (a restart, also from an older snapshot,
  or a failover: checked on each script's first run on a server process, which a restart
  forces since it empties the script cache), or when the heartbeat that running processes
  promise to send did not arrive in time (Redis stalled or was unreachable long enough for a
  bump to time out).
* **Bumps are announced in order.** A bump increments the sequence number and publishes
  ``{gen, seq, change, keys}``; mirrors (:mod:`lockstep.cache.coherence`) flush on a gap, a
  step backwards or a new generation. A bump without a change id (announced before COMMIT)
  marks nothing applied and names no change.
* **A fill never hides a write.** A value is stored only if its generation and stamps are
  still current (compare-and-set).
* **Requests stop waiting.** Every call is bounded by ``timeout`` (each round trip, by the
  client's own socket timeouts when they are no longer) and goes through a
  :class:`~lockstep.cache.breaker.CircuitBreaker`: while it is open calls raise
  :class:`~lockstep.cache.breaker.CircuitOpenError` at once.
* **A failed bump cannot be followed by a stale hit.** The writer holds its answer until
  every mirror has stopped trusting what it held (:func:`~lockstep.cache.breaker.hold_seconds`),
  draws a new generation before trusting Redis again, and leaves the change unmarked for the
  relay; a read that carries its token is never answered from stamps that lack it. A bump
  Redis refuses for lack of memory deletes the stamps instead (``DEL``/``PUBLISH`` are
  allowed then), which invalidates just as well.

Raises: redis-py errors, :class:`TimeoutError` and ``CircuitOpenError`` reach the caller
(the :class:`~lockstep.cache.Cache` serves from the database on any of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError

from lockstep.cache.breaker import CircuitBreaker, hold_seconds
from lockstep.cache.metrics import CacheMetrics
from lockstep.cache.stores.base import StampSnapshot
from lockstep.changes import required_change

T = TypeVar("T")

log = structlog.get_logger("lockstep.cache")

# Every script that trusts the clock starts with this check. It returns the generation to
# use, why it had to draw a new one ('' if it did not), and the server's time in ms.
#
# The identity of the server process (``run_id``, from INFO: ~5 µs of Redis CPU) is checked
# when ARGV[1] says so, which the client does for the first run of each script on a server
# process: a restarted or failed-over Redis starts with an empty script cache, so that run
# is an EVAL after NOSCRIPT, and it runs (and caches the script) before anyone's EVALSHA of
# it can. ARGV[1] is taken off, so each script's own arguments start at ARGV[1].
_GENERATION = """
local verify = table.remove(ARGV, 1)
local function server_run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
end
local function current_generation(clock, channel, fresh)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local state = redis.call('HMGET', clock, 'gen', 'run', 'due')
  local run = state[2]
  if verify == '1' or not state[1] then
    run = server_run_id()
  end
  local reason = ''
  if not state[1] then
    reason = 'lost'
  elseif state[2] ~= run then
    reason = 'restart'
  elseif state[3] and now > tonumber(state[3]) then
    reason = 'stall'
  end
  if reason == '' then
    return state[1], reason, now
  end
  redis.call('HSET', clock, 'gen', fresh, 'run', run)
  redis.call('HDEL', clock, 'due')
  local seq = redis.call('HINCRBY', clock, 'seq', 1)
  redis.call('PUBLISH', channel,
    cjson.encode({gen = fresh, seq = seq, flush = true, reason = reason}))
  return fresh, reason, now
end
"""

# KEYS: stamp keys..., clock, marker. ARGV: fresh gen, channel, ttl, confirm (1/0).
_READ = (
    _GENERATION
    + """
local n = #KEYS - 2
local clock, marker = KEYS[n + 1], KEYS[n + 2]
local gen, reason = current_generation(clock, ARGV[2], ARGV[1])
local confirmed = 1
if ARGV[4] == '1' and redis.call('EXISTS', marker) == 0 then
  confirmed = 0
end
local out = {gen, redis.call('HGET', clock, 'seq') or '0', reason, confirmed}
local tag = '@' .. gen
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if not v or string.sub(v, -#tag) ~= tag then
    v = redis.call('HINCRBY', clock, 'n', 1) .. tag
    redis.call('SET', KEYS[i], v, 'EX', ARGV[3])
  end
  out[i + 4] = v
end
return out
"""
)

# KEYS: stamp keys..., clock, marker. ARGV: fresh gen, channel, ttl, change id ('' for none),
# only if unapplied (1/0), marker ttl, keys as JSON, client time (ms).
_BUMP = (
    _GENERATION
    + """
local n = #KEYS - 2
local clock, marker = KEYS[n + 1], KEYS[n + 2]
local gen, reason = current_generation(clock, ARGV[2], ARGV[1])
local change = ARGV[4]
if change ~= '' and ARGV[5] == '1' and redis.call('EXISTS', marker) == 1 then
  return {gen, 0, reason}
end
local tag = '@' .. gen
for i = 1, n do
  redis.call('SET', KEYS[i], redis.call('HINCRBY', clock, 'n', 1) .. tag, 'EX', ARGV[3])
end
if change ~= '' then
  redis.call('SET', marker, '1', 'EX', ARGV[6])
end
local seq = redis.call('HINCRBY', clock, 'seq', 1)
local message = {gen = gen, seq = seq, t = tonumber(ARGV[8]), keys = cjson.decode(ARGV[7])}
if change ~= '' then
  message.change = tonumber(change)
end
redis.call('PUBLISH', ARGV[2], cjson.encode(message))
return {gen, seq, reason}
"""
)

# KEYS: clock. ARGV: fresh gen, channel, promise (ms, 0: none), refresh below (ms).
# Also the heartbeat: a runtime promises to call it again within ``promise`` ms; a script
# that finds the promise broken knows Redis ran nothing of ours for that long.
_POSITION = (
    _GENERATION
    + """
local gen, reason, now = current_generation(KEYS[1], ARGV[2], ARGV[1])
local promise = tonumber(ARGV[3])
if promise > 0 then
  local due = tonumber(redis.call('HGET', KEYS[1], 'due') or '0')
  if due - now < tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], 'due', now + promise)
  end
end
return {gen, redis.call('HGET', KEYS[1], 'seq') or '0', reason}
"""
)

# KEYS: clock. ARGV: fresh gen, channel, reason.
_RESET = """
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'run', run)
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('PUBLISH', ARGV[2],
  cjson.encode({gen = ARGV[1], seq = seq, flush = true, reason = ARGV[3]}))
return seq
"""

# KEYS: value key, clock, stamp keys... ARGV: value, px, generation, fresh gen, channel,
# stamp values...
_SET_IF_CURRENT = (
    _GENERATION
    + """
local gen = current_generation(KEYS[2], ARGV[5], ARGV[4])
if gen ~= ARGV[3] then
  return 0
end
for i = 3, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[i + 3] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
)

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

# How long "change set N was applied" is remembered, so the relay never bumps it twice.
APPLIED_MARKER_SECONDS = 86_400

# Beyond this many keys a bump message just says "flush": receivers drop their mirror.
MAX_KEYS_PER_MESSAGE = 500

# A stall this long (a fraction of the call timeout) may have made a bump time out: the
# heartbeat promise is this long, and a broken promise retires the generation.
STALL_FRACTION = 0.8


@dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str
    verified: bool  # starts with the generation check, which takes the identity flag


def _script(source: str) -> _Script:
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    return _Script(source, sha, source.startswith(_GENERATION))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fresh() -> str:
    return uuid.uuid4().hex[:10]


class RedisStampStore:
    """Stamps in Redis, shared by every process of a deployment (module docstring).

    ``timeout`` bounds every call (one attempt); ``lease`` is how long a mirror trusts what
    it holds after Redis last proved it complete, and so how long a writer whose bump failed
    holds its answer. Every process of a deployment must use the same two values.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "lockstep",
        stamp_ttl: int = 7 * 86_400,
        timeout: float = 0.5,
        lease: float = 0.25,
        breaker: CircuitBreaker | None = None,
        metrics: CacheMetrics | None = None,
    ) -> None:
        if not 0 < lease <= timeout:
            raise ValueError("lease must be positive and at most the call timeout")
        self.redis = redis
        self.prefix = "{" + prefix + "}"
        self.channel = f"{self.prefix}:invalidations"
        self.clock_key = f"{self.prefix}:clock"
        self.timeout = timeout
        self.lease = lease
        self.stall_after = timeout * STALL_FRACTION
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.metrics = metrics
        self._ttl = stamp_ttl
        self._read = _script(_READ)
        self._bump = _script(_BUMP)
        self._position = _script(_POSITION)
        self._reset = _script(_RESET)
        self._hold_lease = _script(_HOLD_LEASE)
        self._set_if_current = _script(_SET_IF_CURRENT)
        self.needs_reset = False
        self._recovery: asyncio.Task[None] | None = None
        # A client whose own socket timeouts are no longer than ours already bounds each
        # round trip; an extra asyncio timeout per call would cost ~5 µs for nothing.
        options = redis.connection_pool.connection_kwargs
        self._client_bounds_calls = all(
            options.get(name) is not None and options[name] <= timeout
            for name in ("socket_timeout", "socket_connect_timeout")
        )

    def key(self, key: str) -> str:
        """The Redis key of stamp ``key``."""
        return f"{self.prefix}:st:{key}"

    def marker(self, change_id: int) -> str:
        """The Redis key saying change set ``change_id`` was applied."""
        return f"{self.prefix}:applied:{change_id}"

    # -- calls ------------------------------------------------------------------------------

    async def guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()`` bounded by ``timeout`` and through the breaker (also for the
        value store and the relay, which share this connection's fate)."""
        if self._client_bounds_calls:
            return await self.breaker.call(call)

        async def bounded() -> T:
            async with asyncio.timeout(self.timeout):
                return await call()

        return await self.breaker.call(bounded)

    async def _script(self, script: _Script, keys: list[str], args: list[Any]) -> Any:
        flag: list[Any] = ["0"] if script.verified else []

        async def run() -> Any:
            try:
                return await self.redis.evalsha(script.sha, len(keys), *keys, *flag, *args)
            except NoScriptError:
                # The first run of this script on this server process: send it whole, and
                # have it check which server process it is talking to (see _GENERATION).
                flag[:] = ["1"] if script.verified else []
                return await self.redis.eval(script.source, len(keys), *keys, *flag, *args)

        return await self.guarded(run)

    def _noted(self, reason: Any) -> None:
        """Count and log a generation a script had to draw (the clock was lost or rewound)."""
        text = _text(reason)
        if text:
            log.warning("cache_generation_reset", reason=text)
            if self.metrics is not None:
                self.metrics.resets.labels(text).inc()

    async def _recover(self) -> None:
        if self.needs_reset:
            await self.reset("bump_failed")
            self.needs_reset = False

    async def reset(self, reason: str) -> None:
        """Draw a new generation now: every value and ETag cached so far is retired, and
        every mirror flushes (the announcement goes out on the channel)."""
        await self._script(self._reset, [self.clock_key], [_fresh(), self.channel, reason])
        self._noted(reason)

    # -- stamps -----------------------------------------------------------------------------

    async def read_with_seq(
        self, keys: Sequence[str], *, confirm: int = 0
    ) -> tuple[StampSnapshot, int]:
        """The stamps and the invalidation sequence number they are current as of.

        With ``confirm`` (a change id a read-your-writes token asks for) and no record that
        the change was applied, the snapshot's generation is one nothing is stored under:
        the value is computed from the database, stored nowhere, and its ETag is its own.
        """
        await self._recover()
        result: list[Any] = await self._script(
            self._read,
            [*(self.key(k) for k in keys), self.clock_key, self.marker(confirm)],
            [_fresh(), self.channel, self._ttl, "1" if confirm else "0"],
        )
        generation = _text(result[0])
        self._noted(result[2])
        if confirm and not int(result[3]):
            generation = f"{generation}~unconfirmed:{confirm}"
        snapshot = StampSnapshot(generation, tuple(_text(v) for v in result[4:]))
        return snapshot, int(result[1])

    async def read(self, keys: Sequence[str], *, authoritative: bool = False) -> StampSnapshot:
        snapshot, _ = await self.read_with_seq(keys, confirm=required_change())
        return snapshot

    async def position(self, *, promise: bool = False) -> tuple[str, int]:
        """The current generation and sequence number. With ``promise`` (a runtime's
        heartbeat) also promise Redis another call within the stall limit."""
        promise_ms = int(self.stall_after * 1000) if promise else 0
        # Renew the promise at most every half lease: Redis writes it a few times a second
        # whatever the number of processes, and a stall shorter than the promise minus that
        # (and the heartbeat interval) never retires the generation by itself.
        refresh_ms = promise_ms - int(self.lease * 500)
        await self._recover()
        result: list[Any] = await self._script(
            self._position,
            [self.clock_key],
            [_fresh(), self.channel, promise_ms, refresh_ms],
        )
        self._noted(result[2])
        return _text(result[0]), int(result[1])

    async def bump(
        self,
        keys: Collection[str],
        change_id: int | None = None,
        *,
        only_if_unapplied: bool = False,
    ) -> bool:
        """Bump ``keys``; with ``change_id``, mark that change set applied (for a day).
        With ``only_if_unapplied`` (the relay) nothing happens if it was applied already.
        Returns whether it bumped.

        On failure of a committed change's bump (``change_id``, not the relay): raises
        after holding for :func:`hold_seconds`, and makes the next successful call draw a
        new generation. Other failures just raise.
        """
        listed = sorted(keys) if len(keys) <= MAX_KEYS_PER_MESSAGE else ["*"]
        try:
            await self._recover()
            result: list[Any] = await self._script(
                self._bump,
                [*(self.key(k) for k in keys), self.clock_key, self.marker(change_id or 0)],
                [
                    _fresh(),
                    self.channel,
                    self._ttl,
                    "" if change_id is None else change_id,
                    "1" if only_if_unapplied else "0",
                    APPLIED_MARKER_SECONDS,
                    orjson.dumps(listed).decode(),
                    int(time.time() * 1000),
                ],
            )
        except Exception as exc:
            if change_id is None or only_if_unapplied:
                # An announcement before COMMIT (the bump after it is what counts), or the
                # relay (it reads the change set again on its next round): nothing is lost.
                raise
            if _out_of_memory(exc) and await self._delete_instead(keys, listed):
                return True
            # Values cached before this failure may now be stale: retire them all as soon
            # as Redis is back (a new generation), rather than trusting them. Keep trying in
            # the background so other processes' mirrors are flushed even if this one idles.
            self.needs_reset = True
            self._start_recovery()
            await self._hold()
            raise
        self._noted(result[2])
        return bool(int(result[1]))

    async def _hold(self) -> None:
        # A client must not be able to read, anywhere, a value older than the write it was
        # just told about: wait until no mirror can still trust a copy missing this bump.
        wait = hold_seconds(self.breaker.failing_since, self.lease, self.breaker.clock())
        if wait > 0:
            await asyncio.sleep(wait)

    async def _delete_instead(self, keys: Collection[str], listed: list[str]) -> bool:
        """Redis refuses writes (``maxmemory`` with ``noeviction``) but still deletes and
        publishes: a deleted stamp reads back as a fresh value, so this invalidates as well
        as a bump. The message has no sequence number (none could be taken); mirrors drop
        the keys it names. Not marked applied: the relay bumps it again later."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            if keys:
                pipe.delete(*(self.key(k) for k in keys))
            pipe.publish(self.channel, orjson.dumps({"keys": listed}))
            await self.guarded(pipe.execute)
        except Exception:
            return False
        log.warning("cache_bump_refused_stamps_deleted", keys=len(keys))
        return True

    # -- background recovery ----------------------------------------------------------------

    def _start_recovery(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover_until_done())

    async def _recover_until_done(self) -> None:
        # One attempt per breaker period: while it is open an attempt would fail at once.
        while self.needs_reset:
            await asyncio.sleep(self.breaker.open_seconds)
            with contextlib.suppress(Exception):  # still unreachable: the next period
                await self._recover()

    async def close(self) -> None:
        """Stop the background recovery (the next call still recovers first)."""
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
            self._recovery = None

    # -- small state for the relay ----------------------------------------------------------

    async def hold_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take or renew the lease ``name`` for ``holder``; False while another holds it."""
        held = await self._script(
            self._hold_lease, [f"{self.prefix}:lease:{name}"], [holder, ttl_ms]
        )
        return bool(held)

    async def load(self, name: str) -> str | None:
        value: Any = await self.guarded(lambda: self.redis.get(f"{self.prefix}:state:{name}"))
        return None if value is None else _text(value)

    async def save(self, name: str, value: str) -> None:
        await self.guarded(lambda: self.redis.set(f"{self.prefix}:state:{name}", value))

    # -- for operators (never on a request path) --------------------------------------------

    async def lease_holder(self, name: str) -> tuple[str | None, int | None]:
        """Who holds the lease ``name`` and for how many more milliseconds (None, None when
        nobody does)."""
        key = f"{self.prefix}:lease:{name}"
        holder = await self.redis.get(key)
        left = await self.redis.pttl(key)
        return (None if holder is None else _text(holder)), (int(left) if left > 0 else None)

    async def stats(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """The clock (generation, stamp counter, invalidation sequence, server run id) and
        this namespace's keys counted by kind with ``SCAN`` — a walk of the whole keyspace,
        for the operator CLI only. ``progress(seen, total)`` is called per batch."""
        clock = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.clock_key)).items()}
        total = int(await self.redis.dbsize())
        kinds: dict[str, int] = {}
        pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in self.prefix) + ":*"
        skip = len(self.prefix) + 1
        cursor: Any = 0
        seen = 0
        while True:
            cursor, keys = await self.redis.scan(cursor, match=pattern, count=SCAN_BATCH)
            for key in keys:
                kind = _text(key)[skip:].split(":", 1)[0]
                kinds[kind] = kinds.get(kind, 0) + 1
            seen = min(seen + SCAN_BATCH, total)
            if progress is not None:
                progress(seen, total)
            if not int(cursor):
                break
        return {
            "namespace": self.prefix,
            "generation": clock.get("gen"),
            "clock": int(clock.get("n", 0)),
            "seq": int(clock.get("seq", 0)),
            "server_run_id": clock.get("run"),
            "keys": dict(sorted(kinds.items())),
            "redis_keys_total": total,
        }


SCAN_BATCH = 1000


def _out_of_memory(exc: Exception) -> bool:
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and str(exc).startswith("OOM")
    )


class RedisValueStore:
    """Serialized values in Redis, written with a compare-and-set against their stamps."""

    def __init__(self, redis: Redis, stamps: RedisStampStore) -> None:
        self.redis = redis
        self._stamps = stamps

    def _key(self, key: str) -> str:
        return f"{self._stamps.prefix}:v:{key}"

    async def get(self, key: str) -> bytes | None:
        value: Any = await self._stamps.guarded(lambda: self.redis.get(self._key(key)))
        return value if value is None or isinstance(value, bytes) else str(value).encode()

    async def set_if_current(
        self, key: str, value: bytes, ttl: float, stamp_keys: Sequence[str], snapshot: StampSnapshot
    ) -> bool:
        stamps = self._stamps
        keys = [self._key(key), stamps.clock_key, *(stamps.key(k) for k in stamp_keys)]
        args: list[Any] = [value, int(ttl * 1000), snapshot.generation]
        args += [_fresh(), stamps.channel, *snapshot.values]
        stored = await stamps._script(stamps._set_if_current, keys, args)
        return bool(stored)

    async def delete(self, key: str) -> None:
        await self._stamps.guarded(lambda: self.redis.delete(self._key(key)))
