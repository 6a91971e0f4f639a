"""Rate limit counters on Redis: every check of a request in one Lua script (one round trip).

The script runs :func:`lockstep.http.ratelimit.rules.step`'s arithmetic for each key,
reads the time from Redis (``TIME``: every process agrees on the window, whatever their
clocks say) and writes the new states only if every key allowed the request. Keys are
hashes (``a``, ``b``, ``c``: the state's three numbers) that expire when they no longer
matter, so Redis holds at most one small hash per active key.

Imported only when a Redis store is asked for: the core runs without the ``redis`` extra.
Calls are bounded by the client's socket timeout; the limiter allows the request when one
fails (see :mod:`lockstep.http.ratelimit.limiter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from lockstep.http.ratelimit.limiter import Check
from lockstep.http.ratelimit.rules import Outcome

# ARGV: n, then per key: algorithm (f|s|b), limit, period (s), cost, ttl (ms).
# Returns per key: allowed (0/1), remaining, reset (µs), retry_after (µs).
SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local out, writes, all = {}, {}, true
for i = 1, n do
  local j = 1 + (i - 1) * 5
  local algo, limit, period = ARGV[j + 1], tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3])
  local cost = tonumber(ARGV[j + 4])
  local s = redis.call('HMGET', KEYS[i], 'a', 'b', 'c')
  local a, b, c = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
  local ok, remaining, reset, wait, na, nb, nc
  if algo == 'f' then
    local start = now - math.fmod(now, period)
    local count = 0
    if a == start then count = b end
    reset = start + period - now
    if count + cost > limit then
      ok, remaining, wait = false, math.max(math.floor(limit - count), 0), reset
      if cost > limit then wait = reset + period end
    else
      count = count + cost
      ok, remaining, wait = true, math.floor(limit - count), 0
    end
    na, nb, nc = start, count, 0
  elseif algo == 's' then
    local start = now - math.fmod(now, period)
    local prev, cur = 0, 0
    if a == start then prev, cur = b, c elseif a == start - period then prev = c end
    local elapsed = now - start
    local used = prev * (1 - elapsed / period) + cur
    reset = period - elapsed
    if used + cost > limit then
      ok = false
      remaining = math.max(math.floor(limit - used), 0)
      if cur + cost <= limit and prev > 0 then
        wait = period * (1 - (limit - cur - cost) / prev) - elapsed
      elseif cost <= limit then
        wait = reset + math.max(period * (1 - (limit - cost) / cur), 0)
      else
        wait = reset + period
      end
      wait = math.max(wait, 0)
    else
      cur = cur + cost
      ok, remaining, wait = true, math.max(math.floor(limit - used - cost), 0), 0
    end
    na, nb, nc = start, prev, cur
  else
    local interval = period / limit
    local tat = now
    if a and a > now then tat = a end
    local new_tat = tat + interval * cost
    local allow_at = new_tat - period
    if now < allow_at then
      ok = false
      remaining = math.max(math.floor((period - (tat - now)) / interval), 0)
      reset, wait = tat - now, allow_at - now
    else
      ok = true
      remaining = math.max(math.floor((period - (new_tat - now)) / interval + 1e-9), 0)
      reset, wait = new_tat - now, 0
      tat = new_tat
    end
    na, nb, nc = tat, 0, 0
  end
  if not ok then all = false end
  writes[i] = {na, nb, nc, ARGV[j + 5]}
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = math.floor(reset * 1000000)
  out[#out + 1] = math.ceil(wait * 1000000)
end
if all then
  for i = 1, n do
    local w = writes[i]
    redis.call('HSET', KEYS[i], 'a', tostring(w[1]), 'b', tostring(w[2]), 'c', tostring(w[3]))
    redis.call('PEXPIRE', KEYS[i], w[4])
  end
end
return out
"""

_CODES = {"fixed": "f", "sliding": "s", "bucket": "b"}


class RedisRateLimitStore:
    """Counters in Redis under ``prefix``, shared by every process (see the module)."""

    def __init__(self, redis: Redis, *, prefix: str = "lockstep:rl:", owns_client: bool = False):
        self._redis = redis
        self._prefix = prefix
        self._owns = owns_client
        self._script = redis.register_script(SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, timeout: float, prefix: str = "lockstep:rl:") -> Any:
        """A store on a client of its own (closed with the store)."""
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix=prefix, owns_client=True)

    async def hit(self, checks: Sequence[Check]) -> list[Outcome]:
        keys = [self._prefix + check.key for check in checks]
        args: list[Any] = [len(checks)]
        for check in checks:
            limit = check.limit
            args += [
                _CODES[limit.algorithm],
                limit.limit,
                repr(float(limit.period)),
                limit.cost,
                int(limit.keep * 1000) + 1000,
            ]
        reply = await self._script(keys=keys, args=args)
        return [
            Outcome(
                bool(reply[i]),
                checks[i // 4].limit.limit,
                int(reply[i + 1]),
                int(reply[i + 2]) / 1e6,
                int(reply[i + 3]) / 1e6,
            )
            for i in range(0, len(reply), 4)
        ]

    async def close(self) -> None:
        if self._owns:
            await self._redis.aclose()
