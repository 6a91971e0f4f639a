"""Rollup maintenance inside the writer's transaction: an observer of lockstep's write path.

It follows the events of the one write path (:mod:`lockstep.db.writes`) for the rollups'
source tables, and in the ``DERIVE`` commit phase writes one upsert per touched group
(:func:`~lockstep.aggregates.store.apply_all`), before the change feed's ``LOG`` phase, so the
rollup rows' changes are part of the same change set. What each write contributes:

* rows whose values are known (ORM objects, inserts with values, :func:`~lockstep.db.
  bulk_insert`, updates by primary key, the legacy ``bulk_*`` methods): exact deltas, from
  the images the write path read in the transaction (under a row lock on PostgreSQL, so a
  concurrent writer of the same row cannot make an image stale), computed in batches;
* ``update()`` / ``delete()`` with a WHERE, and rows a database cascade deletes or nulls: the
  groups of the rows the statement selects are read before it runs (plus, for an UPDATE that
  sets a group key to a value, the groups the rows move to) and recomputed at commit;
* anything whose groups cannot be known — ``text()`` DML, ``INSERT ... SELECT``, upserts, an
  UPDATE setting a group key to a SQL expression, an executemany UPDATE with a WHERE, an
  insert leaving a needed column to a computed default — makes every group of the rollup be
  recomputed at commit: exact, but a GROUP BY over the whole source; a warning names the
  statement, so a hot path can be rewritten.

Nothing touches a rollup table until commit: the surviving contributions (a rolled-back
savepoint's are dropped by the write path) are combined per group and applied in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter, ClauseElement

from lockstep.aggregates.delta import Deltas, merge_into
from lockstep.aggregates.rollup import Rollup
from lockstep.aggregates.sources import Source, complete, groups_where, moved_groups
from lockstep.aggregates.store import ALL_GROUPS, Group, Recompute, apply_all
from lockstep.changes import defer_to_log, record_changes
from lockstep.db import MISSING, Columns, Database, Phase, RowWrite, StatementWrite, Write
from lockstep.exceptions import AggregateError, ConfigurationError

INSTALLED = "_lockstep_rollups"

log = structlog.get_logger("lockstep.aggregates")

# What one write contributes to one rollup: deltas, or groups to recompute.
Contribution = tuple[str, Deltas | None, Recompute | None]


class Maintenance:
    """Keeps ``rollups`` equal to their GROUP BY for every write through a database's
    sessions. Install it with :meth:`install`, once per database."""

    phase = Phase.DERIVE

    def __init__(self, rollups: Sequence[Rollup]) -> None:
        self.rollups = sorted(rollups, key=lambda r: r.name)
        self.sources: dict[str, Source] = {}
        for rollup in self.rollups:
            found = self.sources.get(rollup.source.name)
            if found is None:
                table = rollup.source
                found = Source(
                    table=table,
                    rollups=[],
                    needed=(),
                    pk=tuple(c.name for c in table.primary_key.columns),
                    column_of={c.key: c.name for c in table.c},
                )
                if not found.pk:
                    raise ConfigurationError(f"rollup source {table.name!r} has no primary key")
                self.sources[table.name] = found
            found.rollups.append(rollup)
            found.needed = tuple(dict.fromkeys([*found.needed, *rollup.needed]))
        self._by_name = {r.name: r for r in self.rollups}
        self._warned: set[tuple[str, str]] = set()

    def install(self, database: Database) -> None:
        cls = database.session_class
        installed: set[str] = getattr(cls, INSTALLED, set())
        overlap = installed & {r.name for r in self.rollups}
        if overlap:
            raise ConfigurationError(
                f"rollups {sorted(overlap)} are already maintained on this database"
            )
        setattr(cls, INSTALLED, installed | {r.name for r in self.rollups})
        database.observe(self)

    # -- the observer ----------------------------------------------------------------------------

    def watched(self, table: str) -> Sequence[str] | None:
        source = self.sources.get(table)
        return None if source is None else source.needed

    def observe(self, session: Session, write: Write) -> list[Contribution]:
        source = self.sources.get(write.table)
        if source is None or (write.sa_table is not None and write.sa_table is not source.table):
            return []  # another table of the same name (another MetaData)
        if isinstance(write, RowWrite):
            return self._rows(source, write)
        return self._statement(session, source, write)

    def commit(self, session: Session, items: list[Contribution]) -> None:
        merged: dict[str, Deltas] = {}
        marks: dict[str, Recompute] = {}
        for name, deltas, groups in items:
            rollup = self._by_name[name]
            if deltas is not None:
                merge_into(merged.setdefault(name, {}), deltas, rollup.extremes)
            if groups is not None:
                current = marks.get(name, set())
                if groups is ALL_GROUPS or current is ALL_GROUPS:
                    marks[name] = ALL_GROUPS
                else:
                    assert isinstance(current, set)
                    assert isinstance(groups, set)
                    marks[name] = current | groups
        if not merged and not marks:
            return
        work = [
            (rollup, merged.get(rollup.name, {}), marks.get(rollup.name, set()))
            for rollup in self.rollups  # in name order: one lock order across rollups too
            if rollup.name in merged or rollup.name in marks
        ]
        # On PostgreSQL the common write's upserts ride in the change-log row's statement
        # (the feed's LOG phase runs after this one): no round trip of their own.
        changes = apply_all(
            session.connection(), work, defer=lambda prelude: defer_to_log(session, prelude)
        )
        record_changes(session, changes)

    def committed(self, session: Session) -> None:
        pass

    def rolled_back(self, session: Session) -> None:
        pass

    # -- contributions ---------------------------------------------------------------------------

    def _rows(self, source: Source, write: RowWrite) -> list[Contribution]:
        out: list[Contribution] = []
        for rollup in source.rollups:
            deltas: Deltas = {}
            try:
                if write.after:
                    rollup.collect(_complete(source, rollup, write.after), 1, deltas)
                if write.before:
                    rollup.collect(_complete(source, rollup, write.before), -1, deltas)
            except _Unknown as unknown:
                out.append(self._everything(rollup, str(unknown)))
                continue
            if deltas:
                out.append((rollup.name, deltas, None))
        return out

    def _statement(
        self, session: Session, source: Source, write: StatementWrite
    ) -> list[Contribution]:
        written = {k: v for k, v in write.values.items() if k in source.table.c}
        out: list[Contribution] = []
        for rollup in source.rollups:
            if write.sql is not None or write.op == "insert":
                out.append(self._everything(rollup, _describe(write)))
            elif write.op == "delete":
                if write.where is None:
                    out.append(self._everything(rollup, f"a delete of every {write.table} row"))
                else:
                    groups = groups_where(session, rollup, write.where, write.params)
                    out.append((rollup.name, None, groups))
            elif not written:
                # An upsert, or rows updated by keys it could not name: what it sets is
                # not known.
                out.append(self._everything(rollup, _describe(write)))
            elif not set(written) & set(rollup.needed):
                continue  # the statement sets nothing this rollup reads
            elif write.where is None:
                out.append(self._everything(rollup, f"an update of every {write.table} row"))
            elif isinstance(write.params, list | tuple):
                out.append(self._everything(rollup, "an executemany UPDATE with a WHERE"))
            else:
                try:
                    before = groups_where(session, rollup, write.where, write.params)
                    moved = {k.source for k in rollup.keys} & set(written)
                    after = moved_groups(rollup, before, written) if moved else set()
                except AggregateError as error:
                    out.append(self._everything(rollup, str(error)))
                    continue
                out.append((rollup.name, None, before | after))
        return out

    def _everything(self, rollup: Rollup, reason: str) -> Contribution:
        if (rollup.name, reason) not in self._warned:
            self._warned.add((rollup.name, reason))
            log.warning(
                "rollup_full_recompute",
                rollup=rollup.name,
                reason=reason,
                hint="every group is recomputed at commit (a GROUP BY over the source); "
                "write rows with values, or update/delete with a WHERE, to keep it cheap",
            )
        return (rollup.name, None, ALL_GROUPS)


class _Unknown(Exception):
    """A row's value a rollup needs is not known (computed by the database)."""


def _complete(
    source: Source, rollup: Rollup, rows: Columns | Sequence[Any]
) -> Columns | Sequence[Any]:
    """``rows`` with every column ``rollup`` needs, as plain values (scalar defaults filled
    in); _Unknown when a needed value is computed by the database."""
    needed = rollup.needed
    if isinstance(rows, Columns):
        if all(c in rows for c in needed) and not any(_odd(rows[c]) for c in needed):
            return rows  # plain values throughout (an import): checked at C speed
        listed: Sequence[Any] = list(rows.rows())
    else:
        listed = rows
        if all(_plain(row.get(c, MISSING)) for row in listed for c in needed):
            return listed  # the common case: rows as the write path imaged them
    out = []
    for row in listed:
        values: dict[str, Any] = {}
        for column in needed:
            value = row.get(column, MISSING)
            if isinstance(value, BindParameter):
                value = value.value
            if isinstance(value, ClauseElement):
                raise _Unknown(f"{source.table.name}.{column} is set to a SQL expression")
            if value is not MISSING:
                values[column] = value
        if len(values) < len(needed):
            try:
                values = complete(source, rollup, values)
            except AggregateError as error:
                raise _Unknown(str(error)) from None
        out.append(values)
    return out


def _plain(value: Any) -> bool:
    return value is not MISSING and not isinstance(value, ClauseElement)


def _odd(values: list[Any]) -> bool:
    """Whether a column holds anything but plain values (MISSING, SQL elements)."""
    return any(k is type(MISSING) or issubclass(k, ClauseElement) for k in set(map(type, values)))


def _describe(write: StatementWrite) -> str:
    if write.sql is not None:
        return f"a statement lockstep reads as text: {' '.join(write.sql.split())[:120]!r}"
    if write.where is None and write.op == "insert":
        return f"INSERT ... SELECT into {write.table}"
    if write.where is None and write.op == "update" and not write.values:
        return f"an upsert or an update of unnamed rows of {write.table}"
    return f"{write.op} of every row of {write.table}"


__all__ = ["Group", "Maintenance"]
