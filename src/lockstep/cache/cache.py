"""The exact cache: values keyed by the version stamps of what they depend on.

Guarantees (each has a test):

* A value is served only while every stamp it was computed under is unchanged. Writes bump
  stamps after commit, before the writer returns, so the writer's next read is fresh.
* A fill whose dependencies changed while it computed is returned to its caller but not
  stored (compare-and-set against the stamps read *before* computing).
* Concurrent misses for one (key, stamps) run the computation once; waiters hold no
  database connection, and a cancelled caller does not cancel the others' computation.
* Nothing read inside a write transaction is cached (it may see uncommitted writes).
* A backend failure serves from the database (counted), never an error and never stale;
  while the backend's circuit breaker is open nothing waits for it (and nothing is logged per
  request). With ``fail_closed`` the failure raises :class:`CacheUnavailableError` instead.
* :meth:`Cache.announce` bumps stamps without marking a change applied (a bump made inside a
  write transaction, before COMMIT); :meth:`Cache.snapshot` with ``authoritative=True``
  reads the shared stamps, never a local mirror.
* ``None`` and empty results are cached like any value.

Time-based expiry (``ttl`` / ``stale_while_revalidate``) is for values that do not come
from the database (no dependencies), such as external API calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, TypeVar

import orjson
import structlog

from lockstep.cache.breaker import CircuitOpenError
from lockstep.cache.decorator import memoize
from lockstep.cache.dependencies import (
    Dependency,
    Table,
    bumps,
    check_dependencies,
    stamp_keys,
)
from lockstep.cache.metrics import CacheMetrics
from lockstep.cache.stores.base import StampSnapshot, StampStore, ValueStore
from lockstep.changes import Tracking
from lockstep.db import in_write_transaction
from lockstep.exceptions import CacheUnavailableError, ConfigurationError
from lockstep.types import ChangeSet, canonical

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")
Status = Literal["hit", "miss", "bypass"]
Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]

log = structlog.get_logger("lockstep.cache")

_JSON_CODEC: Codec = (orjson.dumps, orjson.loads)


@dataclass(frozen=True, slots=True)
class Lookup(Generic[T]):
    """A value with how it was obtained: ``etag`` is stable across processes sharing the
    stamp store; ``age`` is seconds since the value was computed (0 on a miss)."""

    value: T
    status: Status
    etag: str
    age: float


@dataclass(slots=True)
class _Entry:
    value: Any
    stored_at: float


def _key_text(key: Hashable) -> str:
    return orjson.dumps(key, default=canonical, option=orjson.OPT_NON_STR_KEYS).decode()


class Cache:
    """Tiered exact cache: L1 in this process (bounded LRU), optional shared L2.

    ``stamps`` is the authority on versions (in-memory in embedded mode, Redis in scale-out
    mode). ``tracking`` (the change feed's) lets declared dependencies be checked up front:
    a dependency the feed cannot invalidate is a ConfigurationError, not a stale cache.
    ``namespace`` is part of every key and ETag: put the schema revision in it so a
    migration invalidates everything cached under the old schema. A backend failure is
    served from the database (counted) unless ``fail_closed``, which raises
    :class:`CacheUnavailableError` (503) instead.
    """

    def __init__(
        self,
        stamps: StampStore,
        *,
        l2: ValueStore | None = None,
        tracking: Tracking | None = None,
        namespace: str = "lockstep",
        l1_max_entries: int = 10_000,
        l2_ttl: float = 3600.0,
        metrics: CacheMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        fail_closed: bool = False,
    ) -> None:
        self.stamps = stamps
        self.l2 = l2
        self.tracking = tracking
        self.namespace = namespace
        self.metrics = metrics or CacheMetrics()
        self._l1: OrderedDict[str, _Entry] = OrderedDict()
        self._l1_max = l1_max_entries
        self._l2_ttl = l2_ttl
        self._clock = clock
        self.fail_closed = fail_closed
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._etags: dict[tuple[str, Hashable, StampSnapshot], str] = {}
        self._checked: set[frozenset[tuple[Any, ...]]] = set()

    def cached(
        self,
        *,
        depends: Callable[..., Sequence[Dependency]],
        key: Callable[..., Hashable] | None = None,
        name: str | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorator for an async function; see :func:`lockstep.cache.decorator.memoize`."""
        return memoize(self, depends=depends, key=key, name=name)

    # -- reading --

    def check(self, depends: Sequence[Dependency]) -> None:
        """Raise ConfigurationError for dependencies the change feed would never bump.

        Checked once per dependency shape (table and column), not per value."""
        if self.tracking is None:
            return
        shapes = frozenset(
            (type(d), d.name if isinstance(d, Table) else d.table, getattr(d, "column", None))
            for d in depends
        )
        if shapes not in self._checked:
            check_dependencies(depends, self.tracking)
            self._checked.add(shapes)

    async def snapshot(
        self, depends: Sequence[Dependency], *, authoritative: bool = False
    ) -> tuple[tuple[str, ...], StampSnapshot]:
        """The stamp keys of ``depends`` and their current values.

        ``authoritative`` reads the store every process shares, skipping this process's
        mirror: a check made after taking a row lock (``If-Match`` inside the write
        transaction) then sees a bump another process announced just before its COMMIT.
        Raises whatever the stamp store raises (the backend is down).
        """
        keys = stamp_keys(depends)
        return keys, await self.stamps.read(keys, authoritative=authoritative)

    def etag_for(self, name: str, key: Hashable, snapshot: StampSnapshot) -> str:
        """A digest of the key and the stamps: equal iff nothing it depends on changed.

        Memoized (bounded): a hit recomputes nothing while the stamps stay the same."""
        memo_key = (name, key, snapshot)
        etag = self._etags.get(memo_key)
        if etag is None:
            digest = hashlib.blake2b(digest_size=16)
            parts = (self.namespace, name, _key_text(key), snapshot.generation, *snapshot.values)
            for part in parts:
                digest.update(part.encode())
                digest.update(b"\x00")
            etag = digest.hexdigest()
            if len(self._etags) >= self._l1_max:
                self._etags.clear()
            self._etags[memo_key] = etag
        return etag

    async def get_or_compute(
        self,
        name: str,
        key: Hashable,
        depends: Sequence[Dependency],
        compute: Callable[[], Awaitable[T]],
        *,
        codec: Codec | None = None,
        ttl: float | None = None,
        stale_while_revalidate: float = 0.0,
        revalidate: bool = False,
        store: bool = True,
        storable: Callable[[T], bool] | None = None,
        stamped: tuple[tuple[str, ...], StampSnapshot] | None = None,
    ) -> Lookup[T]:
        """The cached value of ``compute()`` for (``name``, ``key``), valid while ``depends``
        are unchanged.

        ``revalidate`` skips the lookup but stores the fresh value (HTTP ``no-cache``);
        ``store=False`` computes without storing (``no-store``); ``storable(value)`` can
        refuse a particular result (an error response). ``ttl`` is allowed only without
        dependencies (data from outside the database). ``stamped`` passes stamps the caller
        already read with :meth:`snapshot` (they must be read before anything is computed).
        """
        if ttl is not None and depends:
            raise ConfigurationError(
                f"cache {name!r}: ttl is for values that do not come from the database; "
                "database-derived values are invalidated exactly by their dependencies"
            )
        if in_write_transaction():
            self.metrics._bypass.inc()
            return Lookup(await compute(), "bypass", "", 0.0)
        try:
            keys, snapshot = stamped if stamped is not None else await self.snapshot(depends)
        except Exception as exc:  # the stamp store is down: serve from the database
            self._failed("read_stamps", exc, cache=name)
            if self.fail_closed:
                raise CacheUnavailableError("the cache is unavailable") from exc
            self.metrics._bypass.inc()
            return Lookup(await compute(), "bypass", "", 0.0)
        etag = self.etag_for(name, key, snapshot)
        full_key = f"{self.namespace}:{name}:{etag}"
        now = self._clock()
        if not revalidate:
            entry = self._l1.get(full_key)
            if entry is not None:
                age = now - entry.stored_at
                if ttl is None or age < ttl:
                    self._l1.move_to_end(full_key)
                    self.metrics._hit_l1.inc()
                    return Lookup(entry.value, "hit", etag, age)
                if age < ttl + stale_while_revalidate:
                    self._start_fill(
                        full_key,
                        lambda: self._compute_and_store(
                            full_key, compute, keys, snapshot, codec, store, storable
                        ),
                    )
                    self.metrics._hit_l1.inc()
                    return Lookup(entry.value, "hit", etag, age)
            if self.l2 is not None and ttl is None:
                value = await self._l2_get(full_key, codec)
                if value is not _MISSING:
                    self._l1_put(full_key, value, now)
                    self.metrics._hit_l2.inc()
                    return Lookup(value, "hit", etag, 0.0)
                # While L2 answered, another caller's fill may have finished and stored the
                # value here: take it rather than start a second fill (no await from this
                # check to the fill's start, so it joins or finds one).
                entry = self._l1.get(full_key)
                if entry is not None:
                    self.metrics._hit_l1.inc()
                    return Lookup(entry.value, "hit", etag, self._clock() - entry.stored_at)
        self.metrics._miss.inc()
        task = self._start_fill(
            full_key,
            lambda: self._compute_and_store(
                full_key, compute, keys, snapshot, codec, store, storable
            ),
        )
        # shield: a caller that goes away (client disconnect) must not cancel the others' fill.
        value = await asyncio.shield(task)
        return Lookup(value, "miss", etag, 0.0)

    def local_hit(self, name: str, etag: str) -> tuple[Any, float] | None:
        """The L1 value stored under (``name``, ``etag``) and its age, counted as a hit; None
        when this process does not hold it (the caller takes the full path)."""
        full_key = f"{self.namespace}:{name}:{etag}"
        entry = self._l1.get(full_key)
        if entry is None:
            return None
        self._l1.move_to_end(full_key)
        self.metrics._hit_l1.inc()
        return entry.value, self._clock() - entry.stored_at

    # -- filling --

    def _start_fill(self, full_key: str, job: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """One fill per (key, stamps): later callers join the running one."""
        task = self._inflight.get(full_key)
        if task is None:
            task = asyncio.ensure_future(job())
            self._inflight[full_key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(full_key, None))
        return task

    async def _compute_and_store(
        self,
        full_key: str,
        compute: Callable[[], Awaitable[T]],
        keys: tuple[str, ...],
        snapshot: StampSnapshot,
        codec: Codec | None,
        store: bool,
        storable: Callable[[T], bool] | None,
    ) -> T:
        value = await compute()
        if not store or (storable is not None and not storable(value)):
            return value
        try:
            current = await self.stamps.read(keys)
        except Exception as exc:
            self._failed("read_stamps", exc)
            return value
        if current != snapshot:
            # A write committed while we computed: the value may predate it. Return it to
            # this caller (its read began before the write) but never store it.
            self.metrics._rejected.inc()
            return value
        if self.l2 is not None:
            try:
                encoded = (codec or _JSON_CODEC)[0](value)
                stored = await self.l2.set_if_current(
                    full_key, encoded, self._l2_ttl, keys, snapshot
                )
            except Exception as exc:
                self._failed("store", exc)
                return value
            if not stored:
                self.metrics._rejected.inc()
                return value
        self._l1_put(full_key, value, self._clock())
        self.metrics._stored.inc()
        return value

    def _l1_put(self, full_key: str, value: Any, now: float) -> None:
        self._l1[full_key] = _Entry(value, now)
        self._l1.move_to_end(full_key)
        while len(self._l1) > self._l1_max:
            self._l1.popitem(last=False)

    async def _l2_get(self, full_key: str, codec: Codec | None) -> Any:
        assert self.l2 is not None
        try:
            raw = await self.l2.get(full_key)
        except Exception as exc:
            self._failed("get", exc)
            return _MISSING
        if raw is None:
            return _MISSING
        return (codec or _JSON_CODEC)[1](raw)

    def _failed(self, operation: str, exc: Exception, **context: Any) -> None:
        """Count a backend failure; one the breaker refused is only counted by the breaker
        (nothing was attempted, and an outage must not log once per request)."""
        if isinstance(exc, CircuitOpenError):
            return
        self.metrics.errors.labels(operation).inc()
        log.warning("cache_unavailable", operation=operation, error=repr(exc), **context)

    # -- invalidating --

    async def invalidate(self, changeset: ChangeSet) -> None:
        """Bump every stamp ``changeset`` touches and mark it applied (a change-hub listener,
        run after COMMIT and before the writer returns).

        Never raises: a failed bump is counted and logged, the store retires everything
        cached before it as soon as it can, and the relay bumps the change set again."""
        keys = bumps(changeset)
        if not keys:
            return
        self.metrics.invalidations.inc(len(keys))
        try:
            await self.stamps.bump(keys, changeset.id)
        except Exception as exc:
            self.metrics.errors.labels("bump").inc()
            log.error("cache_invalidation_failed", changeset=changeset.id, error=repr(exc))

    async def announce(self, keys: Collection[str]) -> bool:
        """Bump ``keys`` (from :func:`~lockstep.cache.bumps`) *without* marking any change
        set applied and without a change id in the invalidation message.

        For a write transaction that bumps right before its COMMIT, so that a concurrent
        check made after taking the same row lock sees the stamps move. The transaction may
        still roll back (then the bump only costs misses), and the change set must still be
        bumped after COMMIT by :meth:`invalidate` (only that marks it applied and lets
        read-your-writes tokens and the relay rely on it). Never raises: returns whether the
        stamp store took the bump (a failure is counted as ``announce``)."""
        if not keys:
            return True
        try:
            await self.stamps.bump(keys)
        except Exception as exc:
            self._failed("announce", exc)
            return False
        return True

    def clear_local(self) -> None:
        """Drop every L1 entry (after this process may have missed invalidations)."""
        self._l1.clear()

    @property
    def l1_size(self) -> int:
        return len(self._l1)


class _Missing:
    pass


_MISSING: Any = _Missing()
