"""Inserting many plain rows in the session's transaction, at the driver's speed.

:func:`bulk_insert` is ``session.execute(insert(table), rows)`` for imports: the same rows
land, and the change feed and the rollups see them (as a :class:`~lockstep.db.writes.RowWrite`
of :class:`~lockstep.db.columns.Columns` from the write path, :mod:`lockstep.db.interception`).
What differs is how the rows reach the driver:

* SQLite: SQLAlchemy's executemany builds a parameter dict per row and converts every value
  through its type's processor (1.4 s of a 4.7 s import of 150k rows). Here each column is
  converted in one pass, through a memo (a date column of an import holds a few hundred
  distinct values, a flag two), and the rows go to ``sqlite3.executemany`` in one hand-off
  to the driver's thread (:mod:`lockstep.db.batch`).
* PostgreSQL on asyncpg: the converted columns go to the server by binary ``COPY``
  (:func:`~lockstep.db.batch.copy_rows`), in the open transaction: a 150k-row import
  took 7.1 s through SQLAlchemy's executemany. Other drivers: SQLAlchemy Core's
  executemany.

Why a function of its own rather than a hook on ``session.execute``: which listener runs
first on ``do_orm_execute`` is registration order, and the fast path must run after every
observer and instead of SQLAlchemy's execution; an explicit call has no ordering question
and says in the caller's code that the rows take the bulk path.
"""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from lockstep.db.batch import (
    DriverCopy,
    DriverStatement,
    copy_rows,
    driver_copy,
    driver_statement,
    execute_batch,
)
from lockstep.db.columns import Columns, Memo
from lockstep.db.interception import interception_of
from lockstep.exceptions import ConfigurationError


async def bulk_insert(
    session: AsyncSession, table: Table, rows: Columns | Sequence[Mapping[str, Any]]
) -> None:
    """Insert ``rows`` into ``table`` in the session's transaction: a :class:`Columns`
    batch, or row mappings (column key -> value, the same keys in every row).

    A column the rows leave out takes its default: a constant, a function of no arguments
    (called for each row), or the server's. Raises ConfigurationError when a left-out column
    has none of these (or a default that needs SQLAlchemy's execution context), or a row
    lacks a key the first row has; the driver's errors (constraints) propagate as they are,
    and nothing of the call is written.
    """
    if isinstance(rows, Columns):
        batch = rows
    else:
        try:
            batch = Columns.of_rows(rows)
        except KeyError as exc:
            raise _ragged(table, exc.args[0]) from None
    if len(batch):
        await session.run_sync(_insert, table, batch)


def _insert(session: Session, table: Table, batch: Columns) -> None:
    connection = session.connection()
    plan = _plan(connection, table, batch.names)
    full = plan.complete(batch)
    # Converted before the write path sees the rows: a caller that catches a conversion
    # error and commits anyway must not leave the feed and the rollups counting rows never
    # written.
    values = plan.driver_rows(full) if plan.driver is not None else None
    interception_of(type(session)).inserted(session, table, full)
    if values is None:
        connection.execute(insert(table), list(full.rows()))
    elif isinstance(plan.driver, DriverCopy):
        copy_rows(connection, plan.driver, values)
    else:
        assert plan.driver is not None
        execute_batch(connection, [(plan.driver, values)])


@dataclass(frozen=True, slots=True)
class _Plan:
    """How rows with one set of keys are inserted into one table on one dialect."""

    table: Table
    keys: tuple[str, ...]
    constants: tuple[tuple[str, Any], ...]
    factories: tuple[tuple[str, Callable[[], Any]], ...]
    driver: DriverStatement | DriverCopy | None  # None: through SQLAlchemy Core

    def complete(self, batch: Columns) -> Columns:
        """``batch`` with the defaults of the left-out columns (its own lists shared)."""
        if not self.constants and not self.factories:
            return batch
        n = len(batch)
        more = {name: [value] * n for name, value in self.constants}
        more.update((name, [make() for _ in range(n)]) for name, make in self.factories)
        return batch.with_columns(more)

    def driver_rows(self, batch: Columns) -> Iterator[tuple[Any, ...]]:
        """The driver's parameters, one tuple per row, each value converted by its column's
        type (now, a column at a time: one pass of ``map`` per column). The tuples are made
        as the driver takes them: ``zip`` reuses one when the driver lets go of it, so a
        batch leaves no thousands of tuples for the garbage collector to trace."""
        assert self.driver is not None
        converted = Columns(
            {
                name: batch[name] if process is None else _convert(process, batch[name])
                for name, process in zip(self.driver.names, self.driver.processors, strict=True)
            },
            len(batch),
        )
        return converted.tuples(self.driver.names)


# Types whose equal values are the same value: a memo keyed by them cannot hand one value
# another's conversion (Decimal("1.10") == Decimal("1.1"), and 1 == True, are not).
_MEMO_SAFE = frozenset({str, int, bool, dt.date, dt.datetime, dt.time, uuid.UUID, type(None)})


def _convert(process: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    """``[process(v) for v in values]``, calling ``process`` once per distinct value when
    the column holds values of one memo-safe type (and NULLs)."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if len(kinds) == 1 and kinds <= _MEMO_SAFE:
        return list(map(Memo(process).__getitem__, values))
    return list(map(process, values))


def _ragged(table: Table, key: str) -> ConfigurationError:
    return ConfigurationError(
        f"bulk insert into {table.name!r}: a row lacks {key!r}, which the first row has; "
        "give every row the same keys"
    )


_plans: weakref.WeakKeyDictionary[Table, dict[tuple[str, tuple[str, ...]], _Plan]] = (
    weakref.WeakKeyDictionary()
)


def _plan(connection: Connection, table: Table, keys: tuple[str, ...]) -> _Plan:
    dialect = connection.dialect.name
    cache = _plans.setdefault(table, {})
    cache_key = (f"{dialect}+{connection.dialect.driver}", keys)
    found = cache.get(cache_key)
    if found is not None:
        return found
    unknown = [k for k in keys if k not in table.c]
    if unknown:
        raise ConfigurationError(f"bulk insert into {table.name!r}: no column(s) {unknown}")
    constants: list[tuple[str, Any]] = []
    factories: list[tuple[str, Callable[[], Any]]] = []
    for column in table.c:
        if column.key in keys:
            continue
        default: Any = column.default
        if default is not None and default.is_scalar:
            constants.append((column.key, default.arg))
        elif default is not None and default.is_callable:
            factories.append((column.key, _no_context(table, column.key, default.arg)))
        elif default is not None:  # a SQL expression: the statement would need it inline
            raise ConfigurationError(
                f"bulk insert into {table.name!r}: give {column.key!r} in the rows (its "
                "default is a SQL expression)"
            )
        elif (
            column.server_default is None
            and not column.nullable
            and not _autoincrement(table, column.key)
        ):
            raise ConfigurationError(
                f"bulk insert into {table.name!r}: the rows lack {column.key!r}, which has no "
                "default and may not be NULL"
            )
    written = (*keys, *(k for k, _ in constants), *(k for k, _ in factories))
    driver: DriverStatement | DriverCopy | None = None
    if dialect == "sqlite":
        driver = driver_statement(connection, insert(table), column_keys=written)
    elif dialect == "postgresql":
        driver = driver_copy(connection, table, written)
    found = cache[cache_key] = _Plan(table, keys, tuple(constants), tuple(factories), driver)
    return found


def _no_context(table: Table, key: str, wrapped: Callable[[Any], Any]) -> Callable[[], Any]:
    """SQLAlchemy wraps a zero-argument default as ``fn(context)``; a default that really
    takes the context cannot be called without SQLAlchemy's execution."""
    original = getattr(wrapped, "__wrapped__", None)
    if original is None:
        raise ConfigurationError(
            f"bulk insert into {table.name!r}: give {key!r} in the rows (its default needs "
            "SQLAlchemy's execution context)"
        )
    return original  # type: ignore[no-any-return]


def _autoincrement(table: Table, key: str) -> bool:
    column = table.c[key]
    return column is table.autoincrement_column
