"""Helpers for testing lockstep and applications built on it.

* :class:`PostgresServer` / :class:`RedisServer`: throwaway servers started from the installed
  binaries, as context managers (see ``docs/testing.md`` for pytest fixtures built on them).
* :func:`count_statements`: count the SQL statements a block runs (the N+1 guard).
* :class:`FakeClock`: a clock tests advance by hand (cache TTLs, leases).
* :class:`MemoryStampStore`: in-process version stamps, for a ``Cache`` in unit tests.
* :func:`dump_schema`: a database's schema as text, to freeze what migrations create.

Importing this package starts nothing and needs no test framework.
"""

from lockstep.cache import MemoryStampStore
from lockstep.db import StatementCounter, count_statements
from lockstep.testing.clock import FakeClock
from lockstep.testing.schema import dump_schema
from lockstep.testing.servers import (
    PostgresServer,
    RedisServer,
    ServerNotAvailable,
    ServerStartError,
    find_postgres_bindir,
    free_port,
)

__all__ = [
    "FakeClock",
    "MemoryStampStore",
    "PostgresServer",
    "RedisServer",
    "ServerNotAvailable",
    "ServerStartError",
    "StatementCounter",
    "count_statements",
    "dump_schema",
    "find_postgres_bindir",
    "free_port",
]
