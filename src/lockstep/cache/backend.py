"""What a runtime's cache runs on: its stores, and the background work that keeps them exact.

:class:`~lockstep.Lockstep` builds one from its settings (:func:`backend_from_settings`):
stamps in the process without ``LOCKSTEP_REDIS_URL``, :class:`RedisBackend` with it. To run
on another store, pass a backend yourself::

    Lockstep(settings, db, tracking, backend=StoreBackend(MyStampStore(), MyValueStore()))

:class:`StoreBackend` wraps stores that need no background work; implement
:class:`CacheBackend` for one that does (a subscription, a relay).

A backend promises: ``stamps`` and ``values`` follow the contracts of
:class:`~lockstep.cache.StampStore` and :class:`~lockstep.cache.ValueStore`; when ``shared``
is False the stamps are this process's alone, and the runtime follows the change log so
other processes' writes still invalidate them; ``start``/``stop`` run and end whatever keeps
the stores coherent; ``ping`` raises when the backend does not answer (readiness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lockstep.cache.cache import Cache
from lockstep.cache.stores.base import StampStore, ValueStore
from lockstep.cache.stores.memory import MemoryStampStore
from lockstep.changes import Changes
from lockstep.exceptions import ConfigurationError
from lockstep.settings import Settings


class CacheBackend(Protocol):
    """Stores for a :class:`Cache`, and the life cycle of what keeps them coherent."""

    @property
    def stamps(self) -> StampStore: ...

    @property
    def values(self) -> ValueStore | None: ...

    @property
    def shared(self) -> bool:
        """True when every process reads the same stamps (no need to follow the log)."""
        ...

    def attach(self, cache: Cache, changes: Changes) -> None:
        """Called once by the runtime, with the cache built on these stores."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the backend does not answer (used by readiness checks)."""
        ...


@dataclass
class StoreBackend:
    """Stores that need no background work (the in-process default is one)."""

    stamps: StampStore
    values: ValueStore | None = None
    shared: bool = False

    def attach(self, cache: Cache, changes: Changes) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def ping(self) -> None:
        pass


def backend_from_settings(settings: Settings, namespace: str) -> CacheBackend:
    """Redis when ``LOCKSTEP_REDIS_URL`` is set, else stamps in this process. Raises
    ConfigurationError when Redis is asked for but its client is not installed."""
    if settings.redis_url:
        try:
            from lockstep.cache.redis_backend import RedisBackend
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"LOCKSTEP_REDIS_URL is set but {exc.name!r} is not installed: "
                "pip install 'lockstep[redis]'"
            ) from None
        return RedisBackend.from_settings(settings, namespace)
    return StoreBackend(MemoryStampStore())
