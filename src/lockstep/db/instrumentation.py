"""Statement hooks: slow-query logging and statement counting (the N+1 guard in tests)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger("lockstep.db")

_STARTED = "lockstep_query_started"


# Per engine, the threshold of its slow-query log: statements lockstep runs on the driver
# directly (lockstep.db.batch) report themselves through log_if_slow.
_thresholds: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def install_slow_query_log(engine: AsyncEngine, threshold_ms: float) -> None:
    """Log every statement slower than ``threshold_ms`` (its SQL, never its parameters)."""
    if threshold_ms <= 0:
        return
    sync_engine = engine.sync_engine
    _thresholds[sync_engine] = threshold_ms

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info.setdefault(_STARTED, []).append(time.perf_counter())

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _after(
        conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, many: bool
    ) -> None:
        _warn_if_slow(conn.info[_STARTED].pop(), threshold_ms, statement, many)

    @event.listens_for(sync_engine, "handle_error")
    def _failed(context: Any) -> None:
        # A failed statement never reaches _after: drop its start time, or every error
        # would leave one behind on the pooled connection for as long as it lives.
        if context.connection is not None and context.connection.info.get(_STARTED):
            context.connection.info[_STARTED].pop()


def log_if_slow(connection: Connection, statement: str, started: float, *, many: bool) -> None:
    """The slow-query entry for a statement run on the driver directly, past SQLAlchemy's
    cursor events (``started``: its ``time.perf_counter()`` at the start)."""
    threshold = _thresholds.get(connection.engine)
    if threshold is not None:
        _warn_if_slow(started, threshold, statement, many)


def _warn_if_slow(started: float, threshold_ms: float, statement: str, many: bool) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    if elapsed_ms >= threshold_ms:
        log.warning(
            "slow_query",
            duration_ms=round(elapsed_ms, 2),
            statement=statement[:2000],
            executemany=many,
        )


class StatementCounter:
    """Counts statements sent to the database while active; ``statements`` keeps their SQL."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)

    def _record(self, _conn: Any, _c: Any, statement: str, _p: Any, _x: Any, _m: bool) -> None:
        if statement.strip().upper() not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
            self.statements.append(statement)


@contextmanager
def count_statements(*engines: AsyncEngine) -> Iterator[StatementCounter]:
    """Count the statements (not BEGIN/COMMIT) executed on ``engines`` inside the block."""
    counter = StatementCounter()
    targets = {id(e.sync_engine): e.sync_engine for e in engines}.values()
    for target in targets:
        event.listen(target, "before_cursor_execute", counter._record)
    try:
        yield counter
    finally:
        for target in targets:
            event.remove(target, "before_cursor_execute", counter._record)
