"""Statements on a SQLite connection's driver in one trip: several ``executemany`` calls
(:func:`execute_batch`), or one INSERT that returns its row id (:func:`insert_row`).

Why this is written by hand: through SQLAlchemy's aiosqlite adapter every statement costs
three hand-offs to the driver's thread (open a cursor, execute, close it), each a queue put,
a thread wake-up and an event-loop wake-up. For a commit that writes a few small rows after
its own INSERT, those hand-offs are most of the cost (``bench/aggregates.py``: two rollup
upserts made an insert + commit 1.6x slower; the change-log row, four hand-offs with its
RETURNING, was a third of what the change feed added to a write). These functions run
their statements in one hand-off, on the driver's own ``sqlite3`` connection, inside the
transaction already open on it. SQLAlchemy's own adapter reaches aiosqlite's queue the same
way (to set the isolation level), so this depends on nothing SQLAlchemy does not.

The statements must be plain SQL in the driver's parameter style with parameters already
processed (:func:`driver_statement` prepares both from a SQLAlchemy statement). They bypass
SQLAlchemy's cursor events: they report themselves to the slow-query log
(:func:`~lockstep.db.instrumentation.log_if_slow`), and :func:`count_statements` does not see
them.
Other drivers (asyncpg) get one ``exec_driver_sql`` per statement.

On asyncpg, :func:`copy_rows` writes many rows by binary ``COPY`` (asyncpg's
``copy_records_to_table``), about twice as fast as its ``executemany`` and several times
SQLAlchemy's, inside the transaction SQLAlchemy has open. SQLAlchemy's asyncpg adapter
begins its transaction lazily, at the first statement, and offers no public way to ask it
to; :func:`copy_rows` begins it the way the adapter's own cursor does (``_start_transaction``
under its ``_execute_mutex``) and translates driver errors with the adapter's
``_handle_exception``. :func:`driver_copy` returns None when the adapter lacks these, and
the caller falls back to SQLAlchemy's executemany.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import await_only

from lockstep.db.instrumentation import log_if_slow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled for one dialect: its SQL and, per positional parameter, the
    column's bind processor (None: the value goes to the driver as it is)."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def row(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The driver's parameters for one row of ``values`` (by parameter name)."""
        return tuple(
            value if process is None else process(value)
            for value, process in zip((values[n] for n in self.names), self.processors, strict=True)
        )


def driver_statement(
    connection: Connection, statement: ClauseElement, column_keys: Sequence[str] | None = None
) -> DriverStatement:
    """Compile ``statement`` for the connection's dialect, with positional parameters whose
    names are the keys of the rows given to :meth:`DriverStatement.row`. Every parameter must
    be bound to a column of a table (an INSERT's values), whose type processes it.
    ``column_keys``: for an INSERT without values, the columns it writes."""
    dialect = connection.dialect
    keys = list(column_keys) if column_keys is not None else None
    compiled: Any = statement.compile(dialect=dialect, column_keys=keys)
    names = tuple(compiled.positiontup or ())
    binds = {bind.key: bind for bind in compiled.binds.values()}
    processors = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    return DriverStatement(compiled.string, names, processors)


@dataclass(frozen=True, slots=True)
class DriverCopy:
    """A binary COPY into one table: its name, the database names of the columns written,
    and per column its key in the rows and its type's bind processor."""

    table: str
    schema: str | None
    columns: tuple[str, ...]
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


def driver_copy(
    connection: Connection, table: Table, column_keys: Sequence[str]
) -> DriverCopy | None:
    """How to COPY rows of ``column_keys`` into ``table`` on this connection; None unless the
    driver is asyncpg behind SQLAlchemy's adapter as this module knows it."""
    adapter = connection.connection.dbapi_connection
    if connection.dialect.driver != "asyncpg" or not all(
        hasattr(adapter, name)
        for name in ("_transaction", "_start_transaction", "_execute_mutex", "_handle_exception")
    ):
        return None
    dialect = connection.dialect
    columns = [table.c[key] for key in column_keys]
    return DriverCopy(
        table.name,
        table.schema,
        tuple(c.name for c in columns),
        tuple(column_keys),
        tuple(c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns),
    )


def copy_rows(connection: Connection, copy: DriverCopy, rows: Iterable[Sequence[Any]]) -> None:
    """``COPY`` ``rows`` (values in the order of ``copy.columns``, processed) into the table,
    in the connection's current transaction. A driver error is raised as SQLAlchemy's."""
    adapter: Any = connection.connection.dbapi_connection
    driver: Any = connection.connection.driver_connection

    async def run() -> None:
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                await adapter._start_transaction()
            await driver.copy_records_to_table(
                copy.table, records=rows, columns=list(copy.columns), schema_name=copy.schema
            )

    dbapi_error = connection.dialect.loaded_dbapi.Error
    statement = f"COPY {copy.table} ({', '.join(copy.columns)}) FROM STDIN (FORMAT binary)"
    started = time.perf_counter()
    try:
        try:
            await_only(run())
        except dbapi_error:
            raise
        except Exception as exc:
            adapter._handle_exception(exc)  # raises it as the DB-API's error
            raise
    except dbapi_error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc
    log_if_slow(connection, statement, started, many=True)


def execute_batch(
    connection: Connection, batch: Sequence[tuple[DriverStatement, Iterable[Sequence[Any]]]]
) -> None:
    """Run ``executemany(statement, rows)`` for each item, in order, in the connection's
    current transaction; on aiosqlite in one hand-off to the driver's thread. A driver
    error is raised as SQLAlchemy's (``IntegrityError`` and so on), as ``execute`` would."""
    work = [(statement.sql, rows) for statement, rows in batch if rows]
    if not work:
        return
    if not _on_aiosqlite(connection):
        for sql, rows in work:
            connection.exec_driver_sql(sql, list(rows))
        return

    def run(raw: Any, failed: list[str]) -> None:
        for sql, rows in work:
            failed[:] = [sql]
            raw.executemany(sql, rows)

    started = time.perf_counter()
    _in_driver_thread(connection, run, work[0][0])
    log_if_slow(connection, "; ".join(sql for sql, _ in work), started, many=True)


def insert_row(connection: Connection, sql: str, params: tuple[Any, ...]) -> int:
    """Run one INSERT (SQL in the driver's parameter style) in the connection's current
    transaction and return the new row's id (``lastrowid``); on aiosqlite in one hand-off
    instead of SQLAlchemy's four (cursor, execute, fetch, close). SQLite only."""
    if not _on_aiosqlite(connection):
        rowid = connection.exec_driver_sql(sql, params).lastrowid
        assert rowid is not None
        return int(rowid)

    def run(raw: Any, _failed: list[str]) -> int:
        return int(raw.execute(sql, params).lastrowid)

    started = time.perf_counter()
    rowid = _in_driver_thread(connection, run, sql)
    log_if_slow(connection, sql, started, many=False)
    return rowid


def _on_aiosqlite(connection: Connection) -> bool:
    driver = connection.connection.driver_connection
    return hasattr(driver, "_execute") and hasattr(driver, "_conn")


def _in_driver_thread(connection: Connection, fn: Callable[[Any, list[str]], T], sql: str) -> T:
    """``fn(sqlite3 connection, failed)`` in aiosqlite's thread, one hand-off; ``failed``
    names the statement running, for the error SQLAlchemy raises if the driver does."""
    driver: Any = connection.connection.driver_connection
    failed = [sql]
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        result: T = await_only(driver._execute(fn, driver._conn, failed))
    except dbapi_error as exc:
        raise DBAPIError.instance(failed[0], None, exc, dbapi_error) from exc
    return result
