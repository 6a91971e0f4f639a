"""Async engine factory: SQLite tuned for one writer and many readers, PostgreSQL pooled.

SQLite (embedded mode): WAL, ``synchronous=NORMAL``, ``busy_timeout``, foreign keys on, a
larger page cache for the writer (``sqlite_writer_cache_mb``). Writes
go through one connection that opens every transaction with ``BEGIN IMMEDIATE`` (so two
writers queue on the lock instead of failing with "database is locked" when a reader
upgrades); reads use a separate pool marked ``query_only``.

PostgreSQL (asyncpg): a writer pool and a reader pool (autocommit, read-only connections),
each with the pool size, overflow, pre-ping and recycle from settings, a server-side
``statement_timeout`` and a connect timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from lockstep.exceptions import ConfigurationError
from lockstep.settings import Settings
from lockstep.types import Backend


@dataclass(frozen=True, slots=True)
class Engines:
    """The engine that takes writes and the one that serves reads (the same on PostgreSQL)."""

    backend: Backend
    writer: AsyncEngine
    reader: AsyncEngine


def create_engines(settings: Settings) -> Engines:
    """Build the engines for ``settings.database_url``; nothing connects until first use."""
    if settings.is_sqlite:
        return _sqlite_engines(settings)
    try:
        return _postgres_engines(settings)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"a PostgreSQL database needs {exc.name!r}, which is not installed: "
            "pip install 'lockstep[postgres]'"
        ) from None


def _sqlite_engines(settings: Settings) -> Engines:
    url = make_url(settings.database_url)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"timeout": settings.sqlite_busy_timeout_ms / 1000}
    writer = create_async_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_reset_on_return=None,  # see _rollback_if_open
        connect_args=connect_args,
    )
    reader = create_async_engine(
        url,
        pool_size=settings.sqlite_read_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_reset_on_return=None,
        connect_args=connect_args,
    )
    _install_sqlite_pragmas(writer, settings, read_only=False)
    _install_sqlite_pragmas(reader, settings, read_only=True)
    return Engines("sqlite", writer, reader)


def _install_sqlite_pragmas(engine: AsyncEngine, settings: Settings, *, read_only: bool) -> None:
    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE is ours to send.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA cache_size=-{int(settings.sqlite_writer_cache_mb) * 1024}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA temp_store=MEMORY")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    event.listen(engine.sync_engine, "reset", _rollback_if_open)


def _rollback_if_open(dbapi_connection: Any, _record: Any, _state: Any) -> None:
    """The pool's reset when a connection comes back: roll back only a transaction that is
    still open. The default rolls back every time, and through aiosqlite each rollback is a
    trip to its thread; after a commit (every write) or a read there is nothing to undo."""
    if dbapi_connection.driver_connection._conn.in_transaction:
        dbapi_connection.rollback()


def _postgres_engines(settings: Settings) -> Engines:
    server_settings = {"application_name": "lockstep"}
    if settings.db_statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    pool = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": settings.db_pool_pre_ping,
    }
    writer = create_async_engine(
        settings.database_url,
        **pool,
        connect_args={"server_settings": server_settings, "timeout": settings.db_connect_timeout},
    )
    # Reads: every statement on its own (autocommit) on read-only connections. Under READ
    # COMMITTED, PostgreSQL's default, each statement of a transaction takes its own
    # snapshot anyway, so BEGIN and ROLLBACK bought no consistency, only two round trips
    # per read session. A session that needs one snapshot asks for REPEATABLE READ (rollup
    # verification does); a write through a reader is refused by the server.
    reader = create_async_engine(
        settings.database_url,
        **pool,
        isolation_level="AUTOCOMMIT",
        connect_args={
            "server_settings": {**server_settings, "default_transaction_read_only": "on"},
            "timeout": settings.db_connect_timeout,
        },
    )
    return Engines("postgresql", writer, reader)
