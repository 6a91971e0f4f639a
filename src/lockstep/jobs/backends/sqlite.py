"""SQLite: one writer at a time (``BEGIN IMMEDIATE``), so a claim is a plain
``UPDATE … WHERE id IN (SELECT … ORDER BY priority, run_at, id LIMIT n) RETURNING …``.

Times are stored as ``YYYY-MM-DD HH:MM:SS.fff`` UTC text (what ``strftime('%f')`` produces),
which sorts like the instants it names. There is no wake-up channel across processes:
workers poll; in the enqueueing process the commit hook wakes them at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from lockstep.db import Database
from lockstep.jobs.backends.base import JobRows, Listener, NotificationHandler
from lockstep.types import Backend

_FORMAT = "%Y-%m-%d %H:%M:%f"


class SqliteBackend:
    """The jobs SQL for SQLite (3.35+: ``RETURNING``, ``UPDATE … FROM``)."""

    name: Backend = "sqlite"
    now = f"strftime('{_FORMAT}', 'now')"
    skip_locked = ""

    def later(self, seconds: str) -> str:
        return f"strftime('{_FORMAT}', 'now', printf('%+.3f seconds', {seconds}))"

    def age(self, column: str) -> str:
        return f"((julianday('now') - julianday({column})) * 86400.0)"

    def greatest(self, a: str, b: str) -> str:
        return f"max({a}, {b})"

    def unindexed(self, expression: str) -> str:
        return expression

    def among(self, column: str, subquery: str) -> str:
        return f"{column} IN ({subquery})"

    def append_error(self, column: str, attempt: str, error: str) -> str:
        entry = f"json_object('attempt', {attempt}, 'at', {self.now}, 'error', {error})"
        return f"json_insert(coalesce({column}, '[]'), '$[#]', {entry})"

    def rows(
        self, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> tuple[str, dict[str, Any]]:
        # One JSON text parameter, unpacked by SQLite itself: the statement text is the same
        # for any number of rows, and binding 5,000 values one by one is what costs.
        key = f"{name}_json"
        extracted = ", ".join(
            f"json_extract(value, '$[{i}]') AS {column}" for i, (column, _) in enumerate(columns)
        )
        sql = f"{name} AS (SELECT {extracted} FROM json_each(:{key}) ORDER BY key)"
        return sql, {key: orjson.dumps([list(row) for row in rows]).decode()}

    def by_job(self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> JobRows:
        cte, params = self.rows("v", columns, rows)
        match = f"lockstep_jobs.id = v.id AND {self.among('lockstep_jobs.id', 'SELECT id FROM v')}"
        refs = {column: f"v.{column}" for column, _ in columns}
        return JobRows(f"WITH {cte}", "FROM v", match, refs, params)

    def bind_time(self, value: dt.datetime) -> Any:
        if value.tzinfo is None:
            raise ValueError("job times must be aware datetimes")
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    def read_time(self, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)

    @asynccontextmanager
    async def write(self, database: Database) -> AsyncIterator[AsyncConnection]:
        # Through the Database's writer: it queues this process's writers on one lock, so a
        # worker and the app's requests take turns instead of failing with "locked".
        async with database.writer() as session:
            yield await session.connection()

    def autocommit(self, database: Database) -> AbstractAsyncContextManager[AsyncConnection]:
        # One writer at a time either way: a transaction costs no extra round trip here.
        return self.write(database)

    async def lock_limits(self, connection: AsyncConnection) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already serializes every write transaction."""

    async def notify(self, connection: AsyncConnection, payloads: Sequence[str]) -> None:
        """Nothing to send: SQLite has no channel; other processes poll."""

    def listener(self, database: Database, handler: NotificationHandler) -> Listener | None:
        return None
