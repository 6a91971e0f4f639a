"""Rate limits as values, and the three algorithms as plain functions of (state, now).

A :class:`RateLimit` says how many requests (``limit``) per ``period`` seconds, counted by which
algorithm, for which requests (``routes``) and per what (``by``: the authenticated user, the
client address, the route). :func:`step` is the whole decision for one key: it takes the
key's stored state and the time and returns the :class:`Outcome` and the state to store. The
memory store runs it in Python; the Redis store runs the same arithmetic in one Lua script.

Algorithms (all allow ``limit`` requests in a quiet ``period``):

* ``fixed`` — windows aligned on multiples of ``period``; simple, but up to twice the limit
  can pass around a window's edge.
* ``sliding`` — the sliding window counter: the previous window's count weighted by how
  much of it still overlaps the last ``period``, plus the current one. No edge burst, two
  numbers per key.
* ``bucket`` — a token bucket of ``limit`` tokens refilled at ``limit / period`` per second
  (GCRA: one timestamp per key). Bursts up to ``limit``, then a steady rate.

``retry_after`` of a refusal is exact: waiting that long makes the same request pass (if
nothing else used the quota meanwhile); callers round it up to whole seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Algorithm = Literal["fixed", "sliding", "bucket"]
Part = Literal["user", "address", "route"]
State = tuple[float, float, float]

_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86_400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` requests per ``period`` seconds, per distinct ``by`` value.

    ``routes``: ``"METHOD /path/{template}"`` specs the limit applies to (empty: every
    request). ``by``: ``"user"`` (what the middleware's ``identify`` returns; an anonymous
    request counts by its address), ``"address"`` (the client address, proxies resolved),
    ``"route"`` (the matched spec), any combination; ``()`` is one shared quota.
    """

    name: str
    limit: int
    period: float
    algorithm: Algorithm = "sliding"
    by: tuple[Part, ...] = ("user",)
    routes: tuple[str, ...] = ()
    cost: int = 1
    # How long a key's state matters after its last change (then a store may drop it).
    keep: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0 or self.cost < 1:
            raise ValueError(f"limit {self.name!r}: limit, period and cost must be positive")
        if "route" in self.by and not self.routes:
            raise ValueError(f"limit {self.name!r}: by 'route' needs routes")
        object.__setattr__(self, "keep", ttl(self.algorithm, self.period))

    @classmethod
    def parse(cls, name: str, rate: str, **options: object) -> RateLimit:
        """``RateLimit.parse("login", "10/minute", by=("address",))``: ``N/unit`` or
        ``N/K units`` (second, minute, hour, day)."""
        match = _RATE.match(rate)
        if match is None:
            raise ValueError(f"rate {rate!r}: expected like '100/minute' or '10/15 minutes'")
        count, many, unit = match.groups()
        period = (int(many) if many else 1) * _UNITS[unit]
        return cls(name, int(count), period, **options)  # type: ignore[arg-type]


class Outcome(NamedTuple):
    """One key's decision. ``remaining``: requests left now; ``reset``: seconds until the
    quota is whole again (the window's end for windows); ``retry_after``: seconds to wait
    when refused (0 when allowed). A tuple: one is made per limit per request."""

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float


def step(
    algorithm: Algorithm, state: State | None, now: float, limit: int, period: float, cost: int
) -> tuple[Outcome, State]:
    """The decision for one key and the state to store if the request goes ahead."""
    return _STEPS[algorithm](state, now, limit, period, cost)


def _fixed(
    state: State | None, now: float, limit: int, period: float, cost: int
) -> tuple[Outcome, State]:
    start = now - math.fmod(now, period)
    count = state[1] if state is not None and state[0] == start else 0.0
    reset = start + period - now
    if count + cost > limit:
        wait = reset if cost <= limit else reset + period
        return Outcome(False, limit, max(int(limit - count), 0), reset, wait), (start, count, 0.0)
    count += cost
    return Outcome(True, limit, int(limit - count), reset, 0.0), (start, count, 0.0)


def _sliding(
    state: State | None, now: float, limit: int, period: float, cost: int
) -> tuple[Outcome, State]:
    start = now - math.fmod(now, period)
    previous = current = 0.0
    if state is not None:
        if state[0] == start:
            previous, current = state[1], state[2]
        elif state[0] == start - period:
            previous = state[2]
    elapsed = now - start
    used = previous * (1 - elapsed / period) + current
    reset = period - elapsed
    if used + cost > limit:
        if current + cost <= limit and previous > 0:
            # Within this window, once enough of the previous one has slid out.
            wait = period * (1 - (limit - current - cost) / previous) - elapsed
        elif cost <= limit:
            # In the next window, once enough of this one has slid out.
            wait = reset + max(period * (1 - (limit - cost) / current), 0.0)
        else:
            wait = reset + period
        remaining = max(math.floor(limit - used), 0)
        return Outcome(False, limit, remaining, reset, max(wait, 0.0)), (start, previous, current)
    current += cost
    remaining = max(math.floor(limit - used - cost), 0)
    return Outcome(True, limit, remaining, reset, 0.0), (start, previous, current)


def _bucket(
    state: State | None, now: float, limit: int, period: float, cost: int
) -> tuple[Outcome, State]:
    interval = period / limit  # one token every `interval` seconds, `limit` at most
    tat = max(state[0], now) if state is not None else now
    new_tat = tat + interval * cost
    allow_at = new_tat - period
    if now < allow_at:
        remaining = max(math.floor((period - (tat - now)) / interval), 0)
        return Outcome(False, limit, remaining, tat - now, allow_at - now), (tat, 0.0, 0.0)
    remaining = max(math.floor((period - (new_tat - now)) / interval + 1e-9), 0)
    return Outcome(True, limit, remaining, new_tat - now, 0.0), (new_tat, 0.0, 0.0)


_STEPS = {"fixed": _fixed, "sliding": _sliding, "bucket": _bucket}


def ttl(algorithm: Algorithm, period: float) -> float:
    """How long a key's state matters after its last change (then the store may drop it)."""
    return 2 * period if algorithm == "sliding" else period
