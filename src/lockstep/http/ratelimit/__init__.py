"""Rate limiting: limits as values, counters in memory or on Redis (one Lua call per
request), a pure-ASGI middleware with ``RateLimit-*`` and ``Retry-After`` headers.

Build the limiter with :func:`rate_limiter` (the settings choose the store), declare
:class:`RateLimit` values, add :class:`RateLimitMiddleware`; inside a handler, count what only
the handler knows (an account name) with ``await limiter.check(limit, key)``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from lockstep.exceptions import ConfigurationError
from lockstep.http.ratelimit.limiter import (
    Check,
    MemoryRateLimitStore,
    RateLimiter,
    RateLimitStore,
)
from lockstep.http.ratelimit.middleware import ClientAddress, RateLimitMiddleware
from lockstep.http.ratelimit.rules import Algorithm, Outcome, RateLimit, step
from lockstep.settings import Settings


def rate_limiter(settings: Settings, *, registry: CollectorRegistry | None = None) -> RateLimiter:
    """A limiter on Redis when ``LOCKSTEP_REDIS_URL`` is set (every process shares the
    counters; each call bounded by ``LOCKSTEP_REDIS_TIMEOUT``), else in this process."""
    store: RateLimitStore
    if settings.redis_url:
        try:
            from lockstep.http.ratelimit.redis import RedisRateLimitStore
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"LOCKSTEP_REDIS_URL is set but {exc.name!r} is not installed: "
                "pip install 'lockstep[redis]'"
            ) from None
        store = RedisRateLimitStore.from_url(settings.redis_url, timeout=settings.redis_timeout)
    else:
        store = MemoryRateLimitStore()
    return RateLimiter(store, registry=registry)


__all__ = [
    "Algorithm",
    "Check",
    "ClientAddress",
    "MemoryRateLimitStore",
    "Outcome",
    "RateLimit",
    "RateLimitMiddleware",
    "RateLimitStore",
    "RateLimiter",
    "rate_limiter",
    "step",
]
