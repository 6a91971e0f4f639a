"""Throwaway PostgreSQL and Redis servers for tests, started from the installed binaries.

Each server lives in its own temporary directory, listens on a free ``127.0.0.1`` port and is
gone (processes and files) when its ``with`` block exits. They are plain synchronous context
managers, so a session-scoped pytest fixture can own one::

    with PostgresServer() as pg:
        url = pg.create_database("app_test")  # postgresql+asyncpg://postgres@127.0.0.1:…/…

Fault tests can ``stop()``, ``kill()`` and ``start()`` (or ``restart()``) a server under
running code: it comes back on the same port, PostgreSQL with its data (Redis runs without
persistence, so it comes back empty).

A missing binary raises :class:`ServerNotAvailable`, whose message names the apt package to
install; a server that is found but does not come up raises :class:`ServerStartError`.
"""

from lockstep.testing._process import ServerNotAvailable, ServerStartError, free_port
from lockstep.testing.postgres_server import PostgresServer, find_postgres_bindir
from lockstep.testing.redis_server import RedisServer

__all__ = [
    "PostgresServer",
    "RedisServer",
    "ServerNotAvailable",
    "ServerStartError",
    "find_postgres_bindir",
    "free_port",
]
