"""The exact cache: invalidated by the change feed, never by TTLs or key scans.

The Redis pieces (``RedisBackend``, ``RedisStampStore``, ``RedisValueStore``,
``MirroredStampStore``) need the ``redis`` extra and are imported when first used, so the
embedded mode runs without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lockstep.cache.backend import CacheBackend, StoreBackend, backend_from_settings
from lockstep.cache.breaker import CircuitBreaker, CircuitOpenError
from lockstep.cache.cache import Cache, Codec, Lookup
from lockstep.cache.dependencies import Dependency, Row, Scope, Table, bumps, stamp_keys
from lockstep.cache.metrics import CacheMetrics
from lockstep.cache.stores.base import StampSnapshot, StampStore, ValueStore
from lockstep.cache.stores.memory import MemoryStampStore

if TYPE_CHECKING:
    from lockstep.cache.coherence import MirroredStampStore
    from lockstep.cache.redis_backend import RedisBackend
    from lockstep.cache.stores.redis import RedisStampStore, RedisValueStore

_REDIS = {
    "MirroredStampStore": "lockstep.cache.coherence",
    "RedisBackend": "lockstep.cache.redis_backend",
    "RedisStampStore": "lockstep.cache.stores.redis",
    "RedisValueStore": "lockstep.cache.stores.redis",
}


def __getattr__(name: str) -> Any:
    module = _REDIS.get(name)
    if module is None:
        raise AttributeError(f"module 'lockstep.cache' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "Cache",
    "CacheBackend",
    "CacheMetrics",
    "CircuitBreaker",
    "CircuitOpenError",
    "Codec",
    "Dependency",
    "Lookup",
    "MemoryStampStore",
    "MirroredStampStore",
    "RedisBackend",
    "RedisStampStore",
    "RedisValueStore",
    "Row",
    "Scope",
    "StampSnapshot",
    "StampStore",
    "StoreBackend",
    "Table",
    "ValueStore",
    "backend_from_settings",
    "bumps",
    "stamp_keys",
]
