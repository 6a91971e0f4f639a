"""The SQL dialects of the jobs system, one module per database; :func:`backend_for` picks."""

from __future__ import annotations

from lockstep.jobs.backends.base import JobBackend, JobRows, Listener, NotificationHandler
from lockstep.jobs.backends.postgres import PostgresBackend
from lockstep.jobs.backends.sqlite import SqliteBackend
from lockstep.types import Backend

_BACKENDS: dict[str, JobBackend] = {"sqlite": SqliteBackend(), "postgresql": PostgresBackend()}


def backend_for(name: Backend | str) -> JobBackend:
    """The backend for a database kind (``"sqlite"`` or ``"postgresql"``)."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"no jobs backend for database {name!r}") from None


__all__ = [
    "JobBackend",
    "JobRows",
    "Listener",
    "NotificationHandler",
    "PostgresBackend",
    "SqliteBackend",
    "backend_for",
]
