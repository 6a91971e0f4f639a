"""Which exceptions mean "the database is not there right now" rather than "this request
is wrong" or "this code is wrong".

A PostgreSQL restart, a failover, a network cut or an exhausted connection pool surface as
driver and pool exceptions in the middle of whatever the request was doing. They are the
database's state, not a bug: the HTTP layer answers them with a 503 and ``Retry-After``
(:class:`~lockstep.exceptions.DatabaseUnavailableError`) instead of a 500 with a traceback.

:data:`OUTAGE_TYPES` are the exception classes worth looking at (for handler registration);
:func:`database_outage` decides for one exception, following its ``__cause__`` chain, and
returns the error to answer with, or ``None`` when it is not an outage (a constraint
violation, bad SQL: still a 500, still logged with its traceback).
"""

from __future__ import annotations

import socket

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from lockstep.exceptions import DatabaseUnavailableError

# ConnectionError covers refused, reset and aborted connections and broken pipes: what a
# connect to a stopped server or a read from a killed connection raises below SQLAlchemy.
OUTAGE_TYPES: tuple[type[BaseException], ...] = (DBAPIError, PoolTimeoutError, ConnectionError)

# asyncpg's own names for a server that is starting, stopping or gone (SQLAlchemy wraps them
# in DBAPIError; matched by name so this module does not import the optional driver).
_DRIVER_OUTAGES = frozenset(
    {
        "CannotConnectNowError",  # the database system is starting up / shutting down
        "AdminShutdownError",  # terminating connection due to administrator command
        "CrashShutdownError",
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "ClientCannotConnectError",
        "PostgresConnectionError",
        "TooManyConnectionsError",
        "InterfaceError",
    }
)


_SQLITE_OUTAGES = ("database is locked", "unable to open database", "disk i/o error")


def _is_sqlite(exc: DBAPIError) -> bool:
    return type(exc.orig).__module__.startswith("sqlite3")


def database_outage(exc: BaseException) -> DatabaseUnavailableError | None:
    """The 503 to answer ``exc`` with if it (or what caused it) says the database is
    unreachable, restarting or saturated; ``None`` otherwise."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        reason = _reason(current)
        if reason is not None:
            error = DatabaseUnavailableError(f"the database is unavailable ({reason}); try again")
            error.__cause__ = exc
            return error
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _reason(exc: BaseException) -> str | None:
    if isinstance(exc, DatabaseUnavailableError):
        return "unreachable"
    if isinstance(exc, PoolTimeoutError):
        return "no free connection"
    if isinstance(exc, DBAPIError):
        if _is_sqlite(exc):
            # SQLite's OperationalError also means "no such table" or bad SQL: only a busy
            # or unreadable file is the database's state.
            message = str(exc.orig).lower()
            return "busy" if any(m in message for m in _SQLITE_OUTAGES) else None
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            return "connection lost"
        if type(exc.orig).__name__ in _DRIVER_OUTAGES:
            return "connection lost"
        return None
    if isinstance(exc, ConnectionError | socket.gaierror):
        return "unreachable"
    if type(exc).__name__ in _DRIVER_OUTAGES:
        return "connection lost"
    return None
