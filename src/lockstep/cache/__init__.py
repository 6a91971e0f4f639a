"""The exact cache: invalidated by the change feed, never by TTLs or key scans."""

from lockstep.cache.backend import (
    CacheBackend,
    RedisBackend,
    StoreBackend,
    backend_from_settings,
)
from lockstep.cache.breaker import CircuitBreaker, CircuitOpenError
from lockstep.cache.cache import Cache, Codec, Lookup
from lockstep.cache.coherence import MirroredStampStore
from lockstep.cache.dependencies import Dependency, Row, Scope, Table, bumps, stamp_keys
from lockstep.cache.metrics import CacheMetrics
from lockstep.cache.stores.base import StampSnapshot, StampStore, ValueStore
from lockstep.cache.stores.memory import MemoryStampStore
from lockstep.cache.stores.redis import RedisStampStore, RedisValueStore

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
