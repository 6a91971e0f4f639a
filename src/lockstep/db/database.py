"""The :class:`Database`: where sessions come from, and the only owner of the engines.

Guarantees:

* ``writer()`` yields a session inside one transaction that commits when the block exits and
  rolls back when it raises. On SQLite, writers in this process queue on an ``asyncio.Lock``
  (one writer connection), so concurrent requests wait instead of failing with
  "database is locked"; other processes queue on SQLite's own lock (``BEGIN IMMEDIATE`` +
  ``busy_timeout``).
* ``reader()`` yields a session for reads only, from a separate pool of read-only
  connections: on SQLite reads never wait for a write (WAL); on PostgreSQL they run in
  autocommit (no BEGIN/ROLLBACK round trips).
* ``ping()`` answers within ``db_connect_timeout`` or raises
  :class:`~lockstep.exceptions.DatabaseUnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from lockstep.db.engine import Engines, create_engines
from lockstep.db.instrumentation import install_slow_query_log
from lockstep.db.interception import PhaseHook, interception_of
from lockstep.db.writes import Phase, WriteObserver
from lockstep.exceptions import DatabaseUnavailableError
from lockstep.settings import Settings
from lockstep.types import Backend

CommitHook = Callable[[AsyncSession], Awaitable[None]]

_in_writer: ContextVar[bool] = ContextVar("lockstep_in_writer", default=False)


def in_write_transaction() -> bool:
    """True inside ``Database.writer()``: reads may see this transaction's uncommitted writes,
    so nothing read there may be cached for others."""
    return _in_writer.get()


class Database:
    """Sessions for reads and writes over the engines built from ``settings``."""

    def __init__(self, settings: Settings, engines: Engines | None = None) -> None:
        self.settings = settings
        self.engines = engines or create_engines(settings)
        # A session class of our own, so event listeners (change capture) stay per-database.
        self.session_class: type[Session] = type("LockstepSession", (Session,), {})
        self._write_sessions = async_sessionmaker(
            self.engines.writer, expire_on_commit=False, sync_session_class=self.session_class
        )
        self._read_sessions = async_sessionmaker(self.engines.reader, expire_on_commit=False)
        self._commit_hooks: list[CommitHook] = []
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        for engine in self._distinct_engines():
            install_slow_query_log(engine, settings.slow_query_ms)

    @property
    def backend(self) -> Backend:
        return self.engines.backend

    @property
    def is_sqlite(self) -> bool:
        return self.engines.backend == "sqlite"

    @property
    def writer_engine(self) -> AsyncEngine:
        return self.engines.writer

    @property
    def reader_engine(self) -> AsyncEngine:
        return self.engines.reader

    def _distinct_engines(self) -> list[AsyncEngine]:
        if self.engines.reader is self.engines.writer:
            return [self.engines.writer]
        return [self.engines.writer, self.engines.reader]

    def observe(self, observer: WriteObserver) -> None:
        """Deliver every write of this database's sessions to ``observer`` (see
        :mod:`lockstep.db.writes`); its commit step runs in ``observer.phase``."""
        interception_of(self.session_class).observe(observer)

    def add_phase_hook(self, phase: Phase, hook: PhaseHook) -> None:
        """Await ``hook(session)`` in ``phase`` of every commit: ``Phase.VERIFY`` (with the
        writes' row locks held; raising rolls the transaction back) or ``Phase.ANNOUNCE``
        (after every ``VERIFY`` hook, still before the locks are released). ``session`` is
        the synchronous session; hooks must not run statements on it."""
        if phase not in (Phase.VERIFY, Phase.ANNOUNCE):
            raise ValueError("phase hooks run in Phase.VERIFY or Phase.ANNOUNCE")
        interception_of(self.session_class).add_hook(phase, hook)

    def add_commit_hook(self, hook: CommitHook) -> None:
        """Await ``hook(session)`` after every ``writer()`` transaction commits
        (``Phase.PUBLISH``).

        Hooks run before ``writer()`` returns (so a request's response waits for them) and
        in commit order on SQLite. An exception in a hook propagates to the writer: the data
        is committed, so hooks must be safe to retry from the change log.
        """
        self._commit_hooks.append(hook)

    @contextlib.asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on normal exit, rolled back on an exception."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self._write_sessions() as session:
            token = _in_writer.set(True)
            try:
                async with session.begin():
                    yield session
            finally:
                _in_writer.reset(token)
            for hook in self._commit_hooks:
                await hook(session)

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A session for reads, on connections that refuse writes. On PostgreSQL each
        statement runs on its own (autocommit): no BEGIN/ROLLBACK round trips, and the same
        per-statement snapshots READ COMMITTED gives inside a transaction; ask for
        ``isolation_level="REPEATABLE READ"`` on its connection for one snapshot."""
        async with self._read_sessions() as session:
            yield session

    async def ping(self) -> None:
        """Run ``SELECT 1`` on the read path; raise DatabaseUnavailableError if it fails."""
        try:
            async with asyncio.timeout(self.settings.db_connect_timeout):
                async with self.engines.reader.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not ready"; the cause is chained
            raise DatabaseUnavailableError(
                f"database did not answer within {self.settings.db_connect_timeout}s: "
                f"{type(exc).__name__}"
            ) from exc

    def pool_stats(self) -> dict[str, dict[str, int]]:
        """Connections checked out and idle per pool, for the metrics gauges."""
        stats: dict[str, dict[str, int]] = {}
        for role, engine in (("writer", self.engines.writer), ("reader", self.engines.reader)):
            if role == "reader" and engine is self.engines.writer:
                continue
            pool: Any = engine.pool
            stats[role] = {
                "size": int(pool.size()),
                "checked_out": int(pool.checkedout()),
                "idle": int(pool.checkedin()),
                "overflow": max(int(pool.overflow()), 0),
            }
        return stats

    async def dispose(self) -> None:
        """Close every pooled connection (graceful shutdown)."""
        for engine in self._distinct_engines():
            await engine.dispose()
