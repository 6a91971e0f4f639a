"""What a jobs backend supplies: the SQL that differs between databases, the transaction a
worker writes in, and (where the database has one) a wake-up channel.

Everything else (the statements themselves) is shared in ``store.py`` and written against
these fragments, so both databases run the same logic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from lockstep.db import Database
from lockstep.types import Backend

NotificationHandler = Callable[[str], None]
"""Called with each wake-up payload: ``q:<queue>`` (jobs became ready) or ``a:<job id>``
(abort requested)."""

CHANNEL = "lockstep_jobs"


class Listener(Protocol):
    """A background wake-up subscription that reconnects by itself."""

    connected: bool

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def wait_connected(self) -> None: ...


@dataclass(frozen=True, slots=True)
class JobRows:
    """How an ``UPDATE lockstep_jobs`` statement reads one row of values per job:
    ``{prefix} UPDATE lockstep_jobs SET ... ref("x") ... {source} WHERE {match} AND ...``."""

    prefix: str  # a WITH clause, or nothing
    source: str  # a FROM clause, or nothing
    match: str  # picks the jobs the rows name
    refs: dict[str, str]  # column -> SQL for this job's value
    params: dict[str, Any]

    def ref(self, column: str) -> str:
        return self.refs[column]


class JobBackend(Protocol):
    """The dialect-specific parts of the jobs SQL. Implementations hold no state."""

    name: Backend
    now: str
    """SQL for the database clock (the only clock the jobs system trusts)."""
    skip_locked: str
    """Appended to a row-picking SELECT so concurrent workers skip each other's rows."""

    def later(self, seconds: str) -> str:
        """SQL for ``now`` plus the SQL expression ``seconds`` (a float, may be negative)."""
        ...

    def age(self, column: str) -> str:
        """SQL for the seconds from ``column`` to now, as a float."""
        ...

    def greatest(self, a: str, b: str) -> str: ...

    def unindexed(self, expression: str) -> str:
        """``expression`` (text) in a form the planner cannot answer from an index, so a
        condition on it stays a filter and the query uses the index it should."""
        ...

    def among(self, column: str, subquery: str) -> str:
        """SQL for "``column`` is one of the values ``subquery`` returns", planned as a
        lookup of those few values (never a scan of the table joined against them)."""
        ...

    def append_error(self, column: str, attempt: str, error: str) -> str:
        """SQL for the JSON list in ``column`` with ``{"attempt", "at", "error"}`` appended."""
        ...

    def rows(
        self, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> tuple[str, dict[str, Any]]:
        """A CTE ``name(columns...) AS (...)`` over ``rows``, and its bind parameters.

        ``columns`` are ``(name, sql type)`` pairs; the type matters on PostgreSQL.
        """
        ...

    def by_job(self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> JobRows:
        """Per-job values for an UPDATE of ``lockstep_jobs``: ``rows`` start with the job id
        (column ``id``); :class:`JobRows` says how the statement reaches the row of each job."""
        ...

    def bind_time(self, value: dt.datetime) -> Any:
        """An aware datetime in the form the time columns store."""
        ...

    def read_time(self, value: Any) -> dt.datetime | None:
        """A time column's value as an aware UTC datetime."""
        ...

    def write(self, database: Database) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction (committed on exit) on ``database``."""
        ...

    def autocommit(self, database: Database) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for statements that are each atomic on their own (no BEGIN/COMMIT
        round trips where the database allows it; a plain write transaction otherwise)."""
        ...

    async def lock_limits(self, connection: AsyncConnection) -> None:
        """Serialize limit-checking claims across workers until the transaction ends."""
        ...

    async def notify(self, connection: AsyncConnection, payloads: Sequence[str]) -> None:
        """Send wake-ups that are delivered if and only if the transaction commits."""
        ...

    def listener(self, database: Database, handler: NotificationHandler) -> Listener | None:
        """A wake-up subscription, or None where the database has none (polling only)."""
        ...
