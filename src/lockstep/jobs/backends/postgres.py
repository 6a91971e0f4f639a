"""PostgreSQL: claims with ``FOR UPDATE SKIP LOCKED`` (concurrent workers never wait for or
take each other's rows), wake-ups with LISTEN/NOTIFY sent inside the enqueueing transaction
(delivered only if it commits), and a listener that reconnects after a server restart.

Notifications only lower latency: workers also poll, so a lost notification (a restart, a
pooler in transaction mode) delays a job by at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from lockstep.db import Database
from lockstep.jobs.backends.base import CHANNEL, JobRows, Listener, NotificationHandler
from lockstep.types import Backend

log = structlog.get_logger("lockstep.jobs")

# pg_advisory_xact_lock key serializing limit-checking claims ("lockstep" in ASCII).
LIMITS_LOCK_KEY = 0x6C6F636B73746570

_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', p) FROM unnest(CAST(:payloads AS text[])) AS p")
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


class PostgresBackend:
    """The jobs SQL for PostgreSQL 14+."""

    name: Backend = "postgresql"
    now = "now()"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def later(self, seconds: str) -> str:
        return f"(now() + make_interval(secs => {seconds}))"

    def age(self, column: str) -> str:
        return f"CAST(EXTRACT(EPOCH FROM (now() - {column})) AS float8)"

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})"

    def unindexed(self, expression: str) -> str:
        return f"({expression} || '')"

    def among(self, column: str, subquery: str) -> str:
        # ARRAY(subquery) runs once, before the scan; with a plain IN the planner may walk
        # the whole queue and compare each row against the picked ids (no statistics yet).
        return f"{column} = ANY(ARRAY({subquery}))"

    def append_error(self, column: str, attempt: str, error: str) -> str:
        entry = f"jsonb_build_object('attempt', {attempt}, 'at', now(), 'error', {error})"
        return (
            f"CAST(CAST(coalesce({column}, '[]') AS jsonb) || jsonb_build_array({entry}) AS text)"
        )

    def rows(
        self, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> tuple[str, dict[str, Any]]:
        # One array per column: the statement text is the same for any number of rows, so
        # asyncpg's prepared-statement cache keeps working for batches of every size.
        params: dict[str, Any] = {}
        arrays = []
        for j, (column, sql_type) in enumerate(columns):
            key = f"{name}_{column}"
            params[key] = [row[j] for row in rows]
            arrays.append(f"CAST(:{key} AS {sql_type}[])")
        column_list = ", ".join(column for column, _ in columns)
        return (
            f"{name}({column_list}) AS (SELECT * FROM unnest({', '.join(arrays)}))",
            params,
        )

    def by_job(self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> JobRows:
        # One array per column, indexed by the job's position in the id array. Not a join
        # with an unnested CTE: under a generic plan PostgreSQL guesses 10 rows for unnest
        # and 1 for the jobs, picks a nested loop, and rescans the CTE for every job (500
        # jobs: 250,000 comparisons, 100 ms). This plan is the primary key lookup of the ids
        # whatever the estimates; each value is an array_position away (a C loop).
        params: dict[str, Any] = {}
        arrays: dict[str, str] = {}
        for j, (column, sql_type) in enumerate(columns):
            params[f"v_{column}"] = [row[j] for row in rows]
            arrays[column] = f"CAST(:v_{column} AS {sql_type}[])"
        position = f"array_position({arrays['id']}, lockstep_jobs.id)"
        refs = {column: f"({array})[{position}]" for column, array in arrays.items()}
        match = f"lockstep_jobs.id = ANY({arrays['id']})"
        return JobRows("", "", match, refs, params)

    def bind_time(self, value: dt.datetime) -> Any:
        if value.tzinfo is None:
            raise ValueError("job times must be aware datetimes")
        return value

    def read_time(self, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        if getattr(value, "tzinfo", None) is dt.UTC:  # asyncpg's timestamptz: as it should be
            return value  # type: ignore[no-any-return]
        parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)

    @asynccontextmanager
    async def write(self, database: Database) -> AsyncIterator[AsyncConnection]:
        async with database.writer_engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def autocommit(self, database: Database) -> AsyncIterator[AsyncConnection]:
        # Each statement commits by itself: two fewer round trips than BEGIN ... COMMIT.
        async with database.writer_engine.connect() as connection:
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")

    async def lock_limits(self, connection: AsyncConnection) -> None:
        await connection.execute(_LOCK, {"key": LIMITS_LOCK_KEY})

    async def notify(self, connection: AsyncConnection, payloads: Sequence[str]) -> None:
        if payloads:
            await connection.execute(_NOTIFY, {"payloads": list(payloads)})

    def listener(self, database: Database, handler: NotificationHandler) -> Listener | None:
        return PostgresListener(database.settings.database_url, handler)


def asyncpg_dsn(database_url: str) -> str:
    """The ``postgresql://`` DSN asyncpg takes, from a SQLAlchemy ``postgresql+asyncpg`` URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresListener:
    """LISTEN on the jobs channel over its own connection, reconnecting with backoff.

    After every (re)connection it hands ``handler`` the payload ``*`` ("check every queue"),
    since notifications sent while it was away are lost.
    """

    def __init__(
        self,
        database_url: str,
        handler: NotificationHandler,
        *,
        check_every: float = 5.0,
        max_backoff: float = 2.0,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._handler = handler
        self._check_every = check_every
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.connected = False
        self.connections = 0  # how many times a connection was established

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lockstep-jobs-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._handler(payload)

    async def _run(self) -> None:
        import asyncpg  # the postgres extra: only a PostgreSQL database gets here

        delay = 0.05
        while True:
            try:
                connection = await asyncpg.connect(
                    self._dsn, timeout=5, server_settings={"application_name": "lockstep-jobs"}
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("jobs_listener_connect_failed", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            delay = 0.05
            try:
                await self._listen(connection)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("jobs_listener_lost", error=repr(exc))
            finally:
                self.connected = False
                self._connected.clear()
                connection.terminate()

    async def _listen(self, connection: Any) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _c: lost.set())
        await connection.add_listener(CHANNEL, self._on_notification)
        self.connected = True
        self.connections += 1
        self._connected.set()
        self._handler("*")
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_every):
                    await lost.wait()
            if not lost.is_set():
                # A half-open TCP connection raises nothing until written to.
                async with asyncio.timeout(self._check_every):
                    await connection.execute("SELECT 1")
