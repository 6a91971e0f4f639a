"""Rollup maintenance inside the writer's transaction, from the session's own events.

What each write path contributes, and how exactly:

* ORM flush (add / modify / delete objects): exact deltas. Old values of modified and
  deleted rows are read from the database by primary key just before the flush (never from
  possibly stale objects), new values from the objects (or by primary key after the flush
  when the database computed them).
* ``session.execute(insert(T), rows)`` and ``insert(T).values(...)``: exact deltas from the
  statement's parameters, computed in batches (a bulk import costs a few dict operations
  per row). A value the rollup needs but the statement leaves to a computed default is
  refused with :class:`~lockstep.exceptions.AggregateError`.
* ORM bulk UPDATE by primary key (a list of dicts): exact, by reading the rows before and
  after.
* ``update(T)`` / ``delete(T)`` with a WHERE clause: the affected groups are read before
  the statement runs and recomputed at commit. An UPDATE that sets a group-key column to a
  SQL expression cannot be followed (the new groups are unknown) and is refused.
* Deleting a row of a table whose foreign key cascades into the source (ORM or bulk): the
  source rows' groups are read before the delete and recomputed.
* ``text()`` writes into a source table, ``INSERT ... SELECT`` and upserts into it: refused.
* Writes on a raw connection (``session.connection().execute``) are not seen, exactly like
  the change feed: call ``Aggregates.repair`` after them.

Nothing touches a rollup table until commit: ``before_commit`` combines the surviving deltas
per group (a rolled-back savepoint's are dropped, as its rows are) and writes them through
:func:`~lockstep.aggregates.store.apply_all`, before the change feed writes its log row, so the
rollup rows' changes are part of the same change set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, event, select, tuple_
from sqlalchemy.orm import Mapper, Session, SessionTransaction
from sqlalchemy.orm.session import ORMExecuteState
from sqlalchemy.sql.elements import ColumnElement, TextClause

from lockstep.aggregates.delta import Deltas, merge_into
from lockstep.aggregates.legacy import wrap_legacy_bulk
from lockstep.aggregates.rollup import Rollup
from lockstep.aggregates.sources import (
    PK_BATCH,
    Cascade,
    Row,
    Source,
    cascades_into,
    column_name,
    complete,
    deleted_states,
    groups_where,
    key_of,
    matching,
    moved_groups,
    row_of,
    rows_by_key,
    state_of,
    statement_rows,
)
from lockstep.aggregates.store import ALL_GROUPS, Group, Recompute, apply_all, chunks
from lockstep.changes import defer_to_log, record_changes
from lockstep.db import Columns, Database, add_bulk_listener
from lockstep.exceptions import AggregateError, ConfigurationError

PENDING = "lockstep.aggregates.pending"
ROLLED_BACK = "lockstep.aggregates.rolled_back"
RECOMPUTE = "lockstep.aggregates.recompute"
OLD_ROWS = "lockstep.aggregates.old_rows"
INSTALLED = "_lockstep_rollups"

_TEXT_DML = re.compile(
    r"^\s*(?:insert\s+(?:or\s+\w+\s+)?into|replace\s+into|update|delete\s+from|truncate"
    r"(?:\s+table)?|merge\s+into)\s+(?:only\s+)?\"?(?:[A-Za-z_][\w$]*\"?\.\"?)?([A-Za-z_][\w$]*)",
    re.IGNORECASE,
)


class Maintenance:
    """Keeps ``rollups`` equal to their GROUP BY for every write through a database's
    sessions. Install it with :meth:`install`, once per database."""

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
        self.cascades: dict[str, list[Cascade]] = {}
        for source in self.sources.values():
            for cascade in cascades_into(source):
                self.cascades.setdefault(cascade.parent.name, []).append(cascade)
        self._mappers: dict[Mapper[Any], Source | None] = {}

    def install(self, database: Database) -> None:
        cls = database.session_class
        installed: set[str] = getattr(cls, INSTALLED, set())
        overlap = installed & {r.name for r in self.rollups}
        if overlap:
            raise ConfigurationError(
                f"rollups {sorted(overlap)} are already maintained on this database"
            )
        setattr(cls, INSTALLED, installed | {r.name for r in self.rollups})
        wrap_legacy_bulk(cls, self)
        event.listen(cls, "before_flush", self._before_flush)
        event.listen(cls, "after_flush", self._after_flush)
        event.listen(cls, "do_orm_execute", self._on_execute)
        event.listen(cls, "after_soft_rollback", self._after_soft_rollback)
        # First in line: the change capture's before_commit (which writes the log row) must
        # see the rollup rows' changes.
        event.listen(cls, "before_commit", self._before_commit, insert=True)
        add_bulk_listener(cls, self._on_bulk_insert)

    # -- bookkeeping ---------------------------------------------------------------------------

    @staticmethod
    def _record(session: Session, rollup: Rollup, deltas: Deltas) -> None:
        if deltas:
            txn = session.get_nested_transaction()
            session.info.setdefault(PENDING, []).append((txn, rollup, deltas))

    @staticmethod
    def _mark(session: Session, rollup: Rollup, groups: Recompute) -> None:
        marks: dict[str, Recompute] = session.info.setdefault(RECOMPUTE, {})
        current = marks.get(rollup.name, set())
        if groups is ALL_GROUPS or current is ALL_GROUPS:
            marks[rollup.name] = ALL_GROUPS
        else:
            assert isinstance(current, set)
            assert isinstance(groups, set)
            current |= groups
            marks[rollup.name] = current

    @staticmethod
    def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
        if previous.nested:
            # Keep the object, not just its id: a later savepoint could reuse a freed id.
            session.info.setdefault(ROLLED_BACK, {})[id(previous)] = previous
        elif previous.parent is None:
            for key in (PENDING, ROLLED_BACK, RECOMPUTE, OLD_ROWS):
                session.info.pop(key, None)

    def _before_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return
        session.flush()
        rolled_back: dict[int, Any] = session.info.pop(ROLLED_BACK, {})
        merged: dict[str, Deltas] = {}
        for txn, rollup, deltas in session.info.pop(PENDING, []):
            node = txn
            while node is not None and id(node) not in rolled_back:
                node = node.parent
            if node is None:
                merge_into(merged.setdefault(rollup.name, {}), deltas, rollup.extremes)
        marks: dict[str, Recompute] = session.info.pop(RECOMPUTE, {})
        if not merged and not marks:
            return
        work = [
            (rollup, merged.get(rollup.name, {}), marks.get(rollup.name, set()))
            for rollup in self.rollups  # in name order: one lock order across rollups too
            if rollup.name in merged or rollup.name in marks
        ]
        # On PostgreSQL the common write's upserts ride in the change-log row's statement
        # (the capture's before_commit runs after this one): no round trip of their own.
        changes = apply_all(
            session.connection(), work, defer=lambda prelude: defer_to_log(session, prelude)
        )
        record_changes(session, changes)

    # -- ORM flushes ---------------------------------------------------------------------------

    def source_of(self, mapper: Mapper[Any]) -> Source | None:
        try:
            return self._mappers[mapper]
        except KeyError:
            pass
        found = None
        for table in mapper.tables:
            source = self.sources.get(str(table.name))
            if source is not None and table is source.table:
                found = source
                source.attr_of[mapper] = {
                    column: mapper.get_property_by_column(source.table.c[column]).key
                    for column in (*source.needed, *source.pk)
                }
        self._mappers[mapper] = found
        return found

    def _before_flush(self, session: Session, _context: Any, _instances: Any) -> None:
        session.info.pop(OLD_ROWS, None)
        wanted: dict[str, list[tuple[Any, ...]]] = {}
        for obj in session.dirty:
            state = state_of(obj)
            source = self.source_of(state.mapper)
            if source is None or state.key is None:
                continue
            attrs = source.attr_of[state.mapper]
            if any(state.attrs[attrs[c]].history.has_changes() for c in source.needed):
                wanted.setdefault(source.table.name, []).append(tuple(state.key[1]))
        cascaded: dict[str, list[Any]] = {}
        for obj in session.deleted:
            state = state_of(obj)
            source = self.source_of(state.mapper)
            if source is not None and state.key is not None:
                wanted.setdefault(source.table.name, []).append(tuple(state.key[1]))
            for table in state.mapper.tables:
                if str(table.name) in self.cascades and state.key is not None:
                    cascaded.setdefault(str(table.name), []).append(state.key[1])
        for parent, keys in cascaded.items():
            for cascade in self.cascades[parent]:
                pk = list(cascade.parent.primary_key.columns)
                for batch in chunks(keys, PK_BATCH):
                    match = matching(pk, batch)
                    self._mark_where(session, cascade.source, cascade.where(match))
        if wanted:
            old: dict[tuple[str, tuple[Any, ...]], Row] = {}
            for name, keys in wanted.items():
                source = self.sources[name]
                for key, row in rows_by_key(session, source, keys):
                    old[(name, key)] = row
            session.info[OLD_ROWS] = old

    def _after_flush(self, session: Session, context: Any) -> None:
        old: dict[tuple[str, tuple[Any, ...]], Row] = session.info.pop(OLD_ROWS, {})
        added: dict[str, list[Row]] = {}
        removed: dict[str, list[Row]] = {}
        reread: dict[str, list[tuple[Any, ...]]] = {}
        for obj in session.new:
            state = state_of(obj)
            source = self.source_of(state.mapper)
            if source is None:
                continue
            row = row_of(state, source)
            if row is None:
                key = state.mapper.primary_key_from_instance(obj)
                reread.setdefault(source.table.name, []).append(tuple(key))
            else:
                added.setdefault(source.table.name, []).append(row)
        for obj in session.dirty:
            state = state_of(obj)
            source = self.source_of(state.mapper)
            if source is None or state.key is None:
                continue
            before = old.get((source.table.name, tuple(state.key[1])))
            if before is not None:
                removed.setdefault(source.table.name, []).append(before)
                reread.setdefault(source.table.name, []).append(tuple(state.key[1]))
        for state in deleted_states(session, context):
            source = self.source_of(state.mapper)
            if source is None or state.key is None:
                continue
            row = old.get((source.table.name, tuple(state.key[1]))) or row_of(state, source)
            if row is None:
                raise AggregateError(
                    f"cannot tell which {source.table.name} row was deleted: its values "
                    "were neither loaded nor readable"
                )
            removed.setdefault(source.table.name, []).append(row)
        for name, keys in reread.items():
            added.setdefault(name, []).extend(
                row for _, row in rows_by_key(session, self.sources[name], keys)
            )
        for name in {*added, *removed}:
            source = self.sources[name]
            for rollup in source.rollups:
                deltas: Deltas = {}
                rollup.collect(added.get(name, []), 1, deltas)
                rollup.collect(removed.get(name, []), -1, deltas)
                self._record(session, rollup, deltas)

    def record_rows(
        self, session: Session, source: Source, added: Sequence[Any], removed: Sequence[Row]
    ) -> None:
        for rollup in source.rollups:
            deltas: Deltas = {}
            rollup.collect([complete(source, rollup, r) for r in added], 1, deltas)
            rollup.collect(removed, -1, deltas)
            self._record(session, rollup, deltas)

    # -- statements ------------------------------------------------------------------------------

    def _on_execute(self, state: ORMExecuteState) -> Any:
        statement = state.statement
        if isinstance(statement, TextClause):
            self._check_text(statement.text)
            return None
        if not (state.is_insert or state.is_update or state.is_delete):
            return None
        orm_dml = (state.is_update or state.is_delete) and state.is_orm_statement
        if orm_dml and state.session.autoflush:
            # The ORM autoflushes before running the statement, but after this event: flush
            # now so the groups read below include the pending objects it will touch.
            state.session.flush()
        table: Any = getattr(statement, "table", None)
        if hasattr(table, "_deannotate"):
            table = table._deannotate()  # ORM statements carry an annotated copy
        name = str(getattr(table, "name", ""))
        source = self.sources.get(name)
        if source is not None and table is source.table:
            if state.is_insert:
                return self._insert(state, source)
            if state.is_update:
                return self._update(state, source)
            return self._delete(state, source)
        if state.is_delete and name in self.cascades:
            whereclause = getattr(statement, "whereclause", None)
            for cascade in self.cascades[name]:
                parent_pk = list(cascade.parent.primary_key.columns)
                doomed = select(*parent_pk)
                if whereclause is not None:
                    doomed = doomed.where(whereclause)
                column = parent_pk[0] if len(parent_pk) == 1 else tuple_(*parent_pk)
                self._mark_where(state.session, cascade.source, cascade.where(column.in_(doomed)))
        return None

    def _check_text(self, sql: str) -> None:
        match = _TEXT_DML.match(sql)
        if match is None:
            return
        name = match.group(1).lower()
        if name in self.sources or name in self.cascades:
            raise AggregateError(
                f"a text() statement writes to {name!r}, which rollups are computed from; "
                "lockstep cannot tell which groups it changes. Write it with insert()/update()/"
                "delete() statements or ORM objects"
            )

    def _insert(self, state: ORMExecuteState, source: Source) -> Any:
        statement: Any = state.statement
        if getattr(statement, "select", None) is not None:
            raise AggregateError(
                f"INSERT ... SELECT into {source.table.name!r}: rollup maintenance needs the "
                "rows' values; insert the rows as parameters instead"
            )
        if getattr(statement, "_post_values_clause", None) is not None:
            raise AggregateError(
                f"upsert (ON CONFLICT) into {source.table.name!r}: rollup maintenance cannot "
                "tell inserted rows from updated ones; select, then insert or update"
            )
        rows, plain_rows = statement_rows(statement, state.parameters)
        batches = [
            (rollup, self._insert_deltas(source, rollup, rows, plain_rows))
            for rollup in source.rollups
        ]
        result = state.invoke_statement()
        for rollup, deltas in batches:
            self._record(state.session, rollup, deltas)
        return result

    def _on_bulk_insert(self, session: Session, table: Table, batch: Columns) -> None:
        source = self.sources.get(str(table.name))
        if source is None or table is not source.table:
            return
        for rollup in source.rollups:
            self._record(session, rollup, self._insert_deltas(source, rollup, batch, True))

    def _insert_deltas(
        self, source: Source, rollup: Rollup, rows: Columns | list[Any], plain_rows: bool
    ) -> Deltas:
        deltas: Deltas = {}
        if plain_rows:
            # executemany parameters: plain values, usually keyed by column name already.
            try:
                rollup.collect(rows, 1, deltas)
                return deltas
            except KeyError:
                deltas = {}
        listed = list(rows.rows()) if isinstance(rows, Columns) else rows
        rollup.collect([complete(source, rollup, row) for row in listed], 1, deltas)
        return deltas

    def _update(self, state: ORMExecuteState, source: Source) -> Any:
        statement: Any = state.statement
        params = state.parameters
        by_key = state.is_orm_statement and statement.whereclause is None
        if isinstance(params, list | tuple) and params and by_key:
            return self._update_by_key(state, source, params)
        if isinstance(params, list | tuple) and params and statement.whereclause is not None:
            raise AggregateError(
                f"executemany UPDATE of {source.table.name!r} with a WHERE clause: rollup "
                "maintenance cannot follow it. Update by primary key (session.execute("
                "update(Model), [{'id': ..., ...}])) or one statement per row"
            )
        values = dict(statement._values or {})
        if getattr(statement, "_ordered_values", None):
            values.update(dict(statement._ordered_values))
        if isinstance(params, Mapping):
            values.update({k: v for k, v in params.items() if column_name(source, k)})
        written: dict[str, Any] = {}
        for k, v in values.items():
            name = column_name(source, k)
            if name is not None:
                written[name] = v
        if not set(written) & set(source.needed):
            return None
        where = statement.whereclause
        for rollup in source.rollups:
            if not set(written) & set(rollup.needed):
                continue
            if where is None:
                self._mark(state.session, rollup, ALL_GROUPS)
                continue
            before = groups_where(state.session, rollup, where, params)
            moved = {k.source for k in rollup.keys} & set(written)
            after: set[Group] = set()
            if moved:
                after = moved_groups(rollup, before, written)
            self._mark(state.session, rollup, before | after)
        return None

    def _update_by_key(self, state: ORMExecuteState, source: Source, params: Sequence[Any]) -> Any:
        keys = [key_of(source, p) for p in params]
        before = [row for _, row in rows_by_key(state.session, source, keys)]
        result = state.invoke_statement()
        after = [row for _, row in rows_by_key(state.session, source, keys)]
        for rollup in source.rollups:
            deltas: Deltas = {}
            rollup.collect(after, 1, deltas)
            rollup.collect(before, -1, deltas)
            self._record(state.session, rollup, deltas)
        return result

    def _delete(self, state: ORMExecuteState, source: Source) -> Any:
        where = getattr(state.statement, "whereclause", None)
        for rollup in source.rollups:
            if where is None:
                self._mark(state.session, rollup, ALL_GROUPS)
            else:
                groups = groups_where(state.session, rollup, where, state.parameters)
                self._mark(state.session, rollup, groups)
        return None

    def _mark_where(self, session: Session, source: Source, where: ColumnElement[bool]) -> None:
        for rollup in source.rollups:
            self._mark(session, rollup, groups_where(session, rollup, where))
