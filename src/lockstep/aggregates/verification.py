"""Proving a rollup right, and making it right: verify, repair, rebuild.

* :func:`verify` compares the rollup table with a full GROUP BY of its source, read in one
  snapshot (REPEATABLE READ on PostgreSQL, one read transaction on SQLite), and reports every
  group that differs: missing, extra, or with other values.
* :func:`repair` recomputes exactly the groups :func:`verify` reported.
* :func:`rebuild` recomputes every group. It is online: the work is split into chunks by the
  first group key (about ``chunk_rows`` source rows each), each its own short write
  transaction that locks its groups before reading the source, so writers keep going (and
  keep maintaining the rollup) between and during chunks.

Repairs and rebuilds write through the change feed like any write, so cached dashboards are
invalidated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from lockstep.aggregates.delta import sort_key
from lockstep.aggregates.keys import ColumnKey, plain
from lockstep.aggregates.rollup import Rollup
from lockstep.aggregates.store import Group, apply, chunks, group_of_row
from lockstep.changes import record_changes
from lockstep.db import Database
from lockstep.types import canonical

Progress = Callable[[str, int, int], None]
"""``progress(rollup name, source rows done, source rows in total)``"""

CHUNK_ROWS = 200_000
REPAIR_BATCH = 500


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One group where the rollup table and the GROUP BY disagree. ``expected`` is None
    when the group should not exist, ``actual`` when it is missing."""

    group: dict[str, Any]
    expected: dict[str, Any] | None
    actual: dict[str, Any] | None

    def describe(self) -> str:
        where = ", ".join(f"{k}={canonical(v)}" for k, v in self.group.items())
        if self.actual is None:
            return f"[{where}] missing; expected {_values(self.expected)}"
        if self.expected is None:
            return f"[{where}] should not exist; found {_values(self.actual)}"
        wrong = {
            k: (self.actual.get(k), v) for k, v in self.expected.items() if self.actual.get(k) != v
        }
        return f"[{where}] " + ", ".join(f"{k}: {a} != {e}" for k, (a, e) in wrong.items())


def _values(values: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={canonical(v)}" for k, v in (values or {}).items())


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of :func:`verify` for one rollup."""

    rollup: str
    groups: int
    discrepancies: tuple[Discrepancy, ...]

    @property
    def ok(self) -> bool:
        return not self.discrepancies


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The outcome of :func:`repair` or :func:`rebuild` for one rollup: groups rewritten."""

    rollup: str
    groups: int


@dataclass(frozen=True, slots=True)
class _Chunk:
    values: tuple[Any, ...]
    rows: int


def _first_key_chunks(connection: Connection, rollup: Rollup, limit: int) -> list[_Chunk]:
    """First-key values (of the source and of the rollup table) packed into chunks of about
    ``limit`` source rows, in lock order."""
    first = rollup.keys[0]
    expr = first.sql(rollup.source.c[first.source])
    counts: dict[Any, int] = {}
    stmt = select(expr, func.count()).where(rollup.filter_clause()).group_by(expr)
    for value, n in connection.execute(stmt):
        counts[plain(value)] = int(n)
    for (value,) in connection.execute(select(rollup.table.c[first.name]).distinct()):
        counts.setdefault(plain(value), 0)
    out: list[_Chunk] = []
    values: list[Any] = []
    rows = 0
    for value in sorted(counts, key=lambda v: sort_key((v,))):
        if values and rows + counts[value] > limit:
            out.append(_Chunk(tuple(values), rows))
            values, rows = [], 0
        values.append(value)
        rows += counts[value]
    if values:
        out.append(_Chunk(tuple(values), rows))
    return out


def _source_scope(rollup: Rollup, chunk: _Chunk) -> ColumnElement[bool]:
    first = rollup.keys[0]
    column = rollup.source.c[first.source]
    if isinstance(first, ColumnKey):
        return column.in_(chunk.values)
    return or_(*(first.match(column, v) for v in chunk.values))


def _rollup_rows(
    connection: Connection, rollup: Rollup, chunk: _Chunk
) -> dict[Group, dict[str, Any]]:
    first = rollup.table.c[rollup.keys[0].name]
    rows = connection.execute(select(rollup.table).where(first.in_(chunk.values)))
    return {group_of_row(rollup, r): _measures(rollup, r) for r in rows}


def _measures(rollup: Rollup, row: Any) -> dict[str, Any]:
    keys = {k.name for k in rollup.keys}
    return {k: plain(v) for k, v in row._mapping.items() if k not in keys}


def _compare(
    rollup: Rollup, expected: dict[Group, dict[str, Any]], actual: dict[Group, dict[str, Any]]
) -> list[Discrepancy]:
    out = []
    for group in sorted(expected.keys() | actual.keys(), key=sort_key):
        want, have = expected.get(group), actual.get(group)
        if want != have:
            named = {k.name: v for k, v in zip(rollup.keys, group, strict=True)}
            out.append(Discrepancy(named, want, have))
    return out


def _verify_sync(
    connection: Connection, rollup: Rollup, progress: Progress | None, chunk_rows: int
) -> Verification:
    chunks_ = _first_key_chunks(connection, rollup, chunk_rows)
    total = sum(c.rows for c in chunks_)
    done = 0
    groups = 0
    found: list[Discrepancy] = []
    for chunk in chunks_:
        expected = {
            group_of_row(rollup, r): _measures(rollup, r)
            for r in connection.execute(rollup.grouped(_source_scope(rollup, chunk)))
        }
        actual = _rollup_rows(connection, rollup, chunk)
        groups += len(expected.keys() | actual.keys())
        found += _compare(rollup, expected, actual)
        done += chunk.rows
        if progress is not None:
            progress(rollup.name, done, total)
    return Verification(rollup.name, groups, tuple(found))


async def verify(
    database: Database,
    rollup: Rollup,
    *,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Verification:
    """Compare ``rollup`` with a full GROUP BY of its source, in one snapshot."""
    async with database.reader() as session:
        if database.backend == "postgresql":
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})

        def run(sync: Session) -> Verification:
            return _verify_sync(sync.connection(), rollup, progress, chunk_rows)

        return await session.run_sync(run)


async def repair(
    database: Database,
    rollup: Rollup,
    *,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[Verification, Rewrite]:
    """Verify ``rollup``, then recompute every group that differed (locked, in lock order,
    in short write transactions). Returns the verification and what was rewritten."""
    checked = await verify(database, rollup, progress=progress, chunk_rows=chunk_rows)
    groups = [tuple(plain(d.group[k.name]) for k in rollup.keys) for d in checked.discrepancies]
    groups.sort(key=sort_key)
    for batch in chunks(groups, REPAIR_BATCH):
        await _rewrite(database, rollup, set(batch), None)
    return checked, Rewrite(rollup.name, len(groups))


async def rebuild(
    database: Database,
    rollup: Rollup,
    *,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Rewrite:
    """Recompute every group of ``rollup`` from its source, chunk by chunk, online."""
    async with database.reader() as session:
        chunks_: Sequence[_Chunk] = await session.run_sync(
            lambda sync: _first_key_chunks(sync.connection(), rollup, chunk_rows)
        )
    total = sum(c.rows for c in chunks_)
    done = 0
    rewritten = 0
    for chunk in chunks_:
        rewritten += await _rewrite(database, rollup, None, chunk)
        done += chunk.rows
        if progress is not None:
            progress(rollup.name, done, total)
    return Rewrite(rollup.name, rewritten)


async def _rewrite(
    database: Database, rollup: Rollup, groups: set[Group] | None, chunk: _Chunk | None
) -> int:
    """Recompute ``groups``, or every group of ``chunk``, in one write transaction."""

    def run(sync: Session) -> int:
        connection = sync.connection()
        wanted = groups
        scope = None
        if chunk is not None:
            scope = _source_scope(rollup, chunk)
            listed = connection.execute(rollup.distinct_groups(rollup.filter_clause() & scope))
            wanted = {group_of_row(rollup, r) for r in listed}
            wanted |= set(_rollup_rows(connection, rollup, chunk))
        assert wanted is not None
        changes = apply(connection, rollup, {}, wanted, scope)
        record_changes(sync, changes)
        return len(wanted)

    async with database.writer() as session:
        return await session.run_sync(run)
