"""The rate limiter: a store of counters behind one call per request.

``await limiter.hit(checks)`` decides every (limit, key) a request is counted under at
once, atomically: the request is allowed only if every limit allows it, and only then is it
counted against all of them (a refused request uses no quota). That is one call to the
store — a dict in this process, or one Lua script on Redis
(:mod:`lockstep.http.ratelimit.redis`, imported only when used).

A store that fails (Redis down, slow past its timeout) never turns into a 500: the request
is allowed, ``lockstep_rate_limit_errors_total`` rises and a warning is logged (at most once
a minute). Rate limiting protects the service; an outage of its counters must not take the
service down with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter

from lockstep.exceptions import RateLimitedError
from lockstep.http.ratelimit.rules import Outcome, RateLimit, State, step

log = structlog.get_logger("lockstep.ratelimit")


class Check(NamedTuple):
    """One limit and the key a request is counted under for it."""

    limit: RateLimit
    key: str


class RateLimitStore(Protocol):
    """Decides ``checks`` together (see the module): all allowed and counted, or none."""

    async def hit(self, checks: Sequence[Check]) -> list[Outcome]: ...

    async def close(self) -> None: ...


class MemoryRateLimitStore:
    """Counters in this process (embedded mode, or per-process limits). Bounded: past
    ``max_keys`` expired keys are dropped, then the oldest."""

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.time):
        self._states: dict[str, tuple[State, float]] = {}
        self._max_keys = max_keys
        self._clock = clock

    async def hit(self, checks: Sequence[Check]) -> list[Outcome]:
        return self.hit_now(checks)

    def hit_now(self, checks: Sequence[Check]) -> list[Outcome]:
        """:meth:`hit` without the coroutine (for callers on the hot path)."""
        now = self._clock()
        states = self._states
        if len(checks) == 1:  # the common case, without the lists
            limit, key = checks[0]
            stored = states.get(key)
            state = stored[0] if stored is not None and stored[1] > now else None
            outcome, new_state = step(
                limit.algorithm, state, now, limit.limit, limit.period, limit.cost
            )
            if outcome[0]:
                states[key] = (new_state, now + limit.keep)
                if len(states) > self._max_keys:
                    self._shrink(now)
            return [outcome]
        outcomes: list[Outcome] = []
        new_states: list[State] = []
        allowed = True
        for limit, key in checks:
            stored = states.get(key)
            state = stored[0] if stored is not None and stored[1] > now else None
            outcome, new_state = step(
                limit.algorithm, state, now, limit.limit, limit.period, limit.cost
            )
            outcomes.append(outcome)
            new_states.append(new_state)
            allowed = allowed and outcome.allowed
        if allowed:
            for (limit, key), new_state in zip(checks, new_states, strict=True):
                states[key] = (new_state, now + limit.keep)
            if len(states) > self._max_keys:
                self._shrink(now)
        return outcomes

    def _shrink(self, now: float) -> None:
        for key in [key for key, (_, expires) in self._states.items() if expires <= now]:
            del self._states[key]
        while len(self._states) > self._max_keys * 0.9:  # oldest first (insertion order)
            del self._states[next(iter(self._states))]

    async def close(self) -> None:
        self._states.clear()


class RateLimiter:
    """Decides checks on a store, failing open (see the module)."""

    def __init__(self, store: RateLimitStore, *, registry: CollectorRegistry | None = None):
        self.store = store
        # A store in this process is called without a coroutine (the hot path).
        self.memory = store if isinstance(store, MemoryRateLimitStore) else None
        self._errors = Counter(
            "lockstep_rate_limit_errors_total",
            "Rate limit decisions that failed (the request was allowed)",
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._denied = Counter(
            "lockstep_rate_limit_denied_total",
            "Requests refused by a rate limit",
            ["limit"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._last_warning = 0.0

    async def hit(self, checks: Sequence[Check]) -> list[Outcome] | None:
        """The outcomes, or None when the store failed (the request goes ahead)."""
        try:
            if self.memory is not None:
                outcomes = self.memory.hit_now(checks)
                if len(outcomes) == 1 and outcomes[0][0]:
                    return outcomes
            else:
                outcomes = await self.store.hit(checks)
        except Exception as exc:  # any store failure: allow, count, say so now and then
            self._errors.inc()
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("rate_limit_store_failed", error=type(exc).__name__)
            return None
        self.count_refusals(checks, outcomes)
        return outcomes

    def count_refusals(self, checks: Sequence[Check], outcomes: Sequence[Outcome]) -> None:
        """Count the refusals among ``outcomes`` (for callers of the store's ``hit_now``)."""
        for check, outcome in zip(checks, outcomes, strict=True):
            if not outcome[0]:
                self._denied.labels(check.limit.name).inc()

    async def check(self, limit: RateLimit, key: str) -> Outcome | None:
        """Count one request under ``limit`` for ``key`` (an account, an API key: what only
        the handler knows). Raises :class:`~lockstep.RateLimitedError` (429 with
        ``Retry-After``) when refused; None when the store failed."""
        outcomes = await self.hit([Check(limit, f"{limit.name}|{key}")])
        if outcomes is None:
            return None
        outcome = outcomes[0]
        if not outcome.allowed:
            raise RateLimitedError(
                f"too many requests ({limit.name}); "
                f"try again in {max(math.ceil(outcome.retry_after), 1)} s",
                retry_after=outcome.retry_after,
                details={"limit": limit.name},
            )
        return outcome

    async def close(self) -> None:
        await self.store.close()
