"""Capture every write of a :class:`~lockstep.db.Database` session into the change log.

Hand-written because no library does this inside the writing transaction: SQLAlchemy's
events tell us what a flush or a bulk statement did; we turn that into :class:`Change`
values, write them to the log in ``before_commit`` (same transaction), and hand the
committed :class:`ChangeSet` to the database's commit hooks.

What is captured, and how precisely:

* ORM flushes (add / modify / delete objects): row level, with old and new scope values.
* Many-to-many association rows changed through a relationship collection: row level.
* Rows the database deletes or nulls by ``ON DELETE CASCADE / SET NULL``: the whole child
  table (the rows cannot be named).
* ``session.execute(insert(T), [rows])``, ``insert(T).values(...)`` and
  :func:`~lockstep.db.bulk_insert`: per row when the primary key is given; otherwise by
  scope (new rows that nobody can have cached by key).
* ``update(T)`` / ``delete(T)`` with a WHERE clause: the whole table. ORM bulk UPDATE by
  primary key (a list of dicts with keys): row level.
* ``text()`` DML: the table it names; SQL it cannot parse marks every table changed.
* The legacy ``bulk_insert_mappings`` / ``bulk_update_mappings`` / ``bulk_save_objects``:
  per row, like the statements above.

Savepoints rolled back discard their changes; a rolled-back transaction publishes nothing.
Statements run on a raw connection (``session.connection().execute`` or an engine) bypass
the session and are NOT captured: write through the session.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, event, inspect
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.orm.session import ORMExecuteState
from sqlalchemy.sql.elements import TextClause

from lockstep.changes.log import Prelude, run_prelude, write_changeset
from lockstep.changes.tracking import TableSpec, Tracking
from lockstep.db import Columns, Database, add_bulk_listener
from lockstep.types import ALL_TABLES, Change, ChangeSet, Operation, canonical

PENDING = "lockstep.changes.pending"
ROLLED_BACK = "lockstep.changes.rolled_back"
COMMITTED = "lockstep.changes.committed"
COALESCE = "lockstep.changes.coalesce"  # tables whose changes are logged per scope this time
PRELUDE = "lockstep.changes.prelude"  # writes to run in the log row's statement
INSTALLED = "_lockstep_change_capture"

_DML = re.compile(
    r"^\s*(?:with\b.*?\)\s*)?(insert\s+(?:or\s+\w+\s+)?into|update|delete\s+from|replace\s+into|"
    r"truncate(?:\s+table)?|merge\s+into)\s+(?:only\s+)?\"?([A-Za-z_][\w$]*)\"?(?:\.\"?([A-Za-z_][\w$]*)\"?)?",
    re.IGNORECASE | re.DOTALL,
)
_READ = re.compile(
    r"^\s*(select|with|pragma|show|explain|values|set|begin|commit|rollback|savepoint|release)\b",
    re.IGNORECASE,
)


def committed_changesets(session: Any) -> list[ChangeSet]:
    """The change sets committed by ``session`` (an AsyncSession or Session) so far."""
    info = session.info
    sets: list[ChangeSet] = info.get(COMMITTED, [])
    return sets


def defer_to_log(session: Session, prelude: Prelude) -> bool:
    """Run ``prelude`` in the statement that writes this transaction's log row, if a
    :class:`ChangeCapture` is installed on the session's class and the backend is
    PostgreSQL; False otherwise (the caller runs its writes itself).

    Call it from a ``before_commit`` listener that runs before the capture's (rollup
    maintenance inserts itself first). The capture then writes the log row, or, when the
    transaction has nothing to log, runs the prelude alone."""
    if not getattr(type(session), INSTALLED, False):
        return False
    if session.get_bind().dialect.name != "postgresql":
        return False
    if PRELUDE in session.info:
        raise RuntimeError("this transaction already has a prelude to its log row")
    session.info[PRELUDE] = prelude
    return True


def record_changes(session: Session, changes: Iterable[Change]) -> None:
    """Add ``changes`` to the transaction's change set, for writes lockstep itself makes on
    the session's connection (rollup maintenance) that ``session.execute`` never saw. They
    follow the same savepoint and rollback rules as captured changes; without a
    :class:`ChangeCapture` installed they are dropped with the session."""
    ChangeCapture._record(session, changes)


class ChangeCapture:
    """Installs the capture hooks on a database's sessions for the tables in ``tracking``."""

    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking

    def install(self, database: Database) -> None:
        cls = database.session_class
        setattr(cls, INSTALLED, True)
        self._wrap_legacy_bulk(cls)
        event.listen(cls, "after_flush", self._after_flush)
        event.listen(cls, "do_orm_execute", self._on_execute)
        event.listen(cls, "after_soft_rollback", self._after_soft_rollback)
        event.listen(cls, "before_commit", self._before_commit)
        event.listen(cls, "after_commit", self._after_commit)
        add_bulk_listener(cls, self._on_bulk_insert)

    # -- bookkeeping --

    @staticmethod
    def _record(session: Session, changes: Iterable[Change]) -> None:
        txn = session.get_nested_transaction()
        pending = session.info.setdefault(PENDING, [])
        pending.extend((txn, change) for change in changes)

    @staticmethod
    def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
        if previous.nested:
            # Keep the object, not just its id: a later savepoint could reuse a freed id.
            session.info.setdefault(ROLLED_BACK, {})[id(previous)] = previous
        elif previous.parent is None:
            session.info.pop(PENDING, None)
            session.info.pop(ROLLED_BACK, None)
            session.info.pop(COALESCE, None)
            session.info.pop(PRELUDE, None)
            session.info.pop("lockstep.changes.committing", None)

    @staticmethod
    def _surviving(session: Session) -> list[Change]:
        rolled_back: dict[int, Any] = session.info.get(ROLLED_BACK, {})
        kept = []
        for txn, change in session.info.get(PENDING, []):
            node = txn
            while node is not None and id(node) not in rolled_back:
                node = node.parent
            if node is None:
                kept.append(change)
        return kept

    def _before_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return  # a savepoint is being released; the outer transaction decides
        # Commit flushes after this event; flush now so the last changes are in the log too.
        session.flush()
        changes = self._surviving(session)
        session.info.pop(PENDING, None)
        session.info.pop(ROLLED_BACK, None)
        forced = session.info.pop(COALESCE, set())
        prelude: Prelude | None = session.info.pop(PRELUDE, None)
        if changes:
            changeset = write_changeset(
                session.connection(), coalesce(changes, force=forced), prelude
            )
            session.info["lockstep.changes.committing"] = changeset
        elif prelude is not None:
            run_prelude(session.connection(), prelude)

    @staticmethod
    def _after_commit(session: Session) -> None:
        changeset = session.info.pop("lockstep.changes.committing", None)
        if changeset is not None:
            session.info.setdefault(COMMITTED, []).append(changeset)

    # -- legacy bulk methods (they bypass flush events and do_orm_execute) --

    def _wrap_legacy_bulk(self, cls: type[Session]) -> None:
        capture = self
        # Chain to whatever is installed already (rollup maintenance wraps them too).
        insert_before = cls.bulk_insert_mappings
        update_before = cls.bulk_update_mappings
        save_before = cls.bulk_save_objects

        def bulk_insert_mappings(
            session: Session, mapper: Any, mappings: Any, *args: Any, **kwargs: Any
        ) -> None:
            mappings = list(mappings)  # read twice: by us and by SQLAlchemy
            capture._record_mappings(session, mapper, "insert", mappings)
            insert_before(session, mapper, mappings, *args, **kwargs)

        def bulk_update_mappings(session: Session, mapper: Any, mappings: Any) -> None:
            mappings = list(mappings)
            capture._record_mappings(session, mapper, "update", mappings)
            update_before(session, mapper, mappings)

        def bulk_save_objects(session: Session, objects: Any, *args: Any, **kwargs: Any) -> None:
            objects = list(objects)
            changes: list[Change] = []
            for obj in objects:
                op: Operation = "insert" if inspect(obj).key is None else "update"
                changes.extend(capture._object_changes(obj, op))
            capture._record(session, changes)
            save_before(session, objects, *args, **kwargs)

        cls.bulk_insert_mappings = bulk_insert_mappings  # type: ignore[method-assign,assignment]
        cls.bulk_update_mappings = bulk_update_mappings  # type: ignore[method-assign,assignment]
        cls.bulk_save_objects = bulk_save_objects  # type: ignore[method-assign,assignment]

    def _record_mappings(self, session: Session, mapper: Any, op: Operation, rows: Any) -> None:
        table = inspect(mapper).local_table
        spec = self.tracking.spec(str(table.name))
        if spec is not None:
            self._record(session, [_row_change(spec, op, _plain(row)) for row in rows])

    # -- ORM flushes --

    def _after_flush(self, session: Session, _flush_context: Any) -> None:
        changes: list[Change] = []
        for obj in session.new:
            changes.extend(self._object_changes(obj, "insert"))
        for obj in session.dirty:
            if session.is_modified(obj, include_collections=False):
                changes.extend(self._object_changes(obj, "update"))
            changes.extend(self._association_changes(obj, deleted=False))
        for obj in session.deleted:
            changes.extend(self._object_changes(obj, "delete"))
        for obj in session.new:
            changes.extend(self._association_changes(obj, deleted=False))
        for obj in session.deleted:
            changes.extend(self._association_changes(obj, deleted=True))
        if changes:
            self._record(session, changes)

    def _object_changes(self, obj: Any, op: Operation) -> list[Change]:
        state = inspect(obj)
        mapper = state.mapper
        out: list[Change] = []
        for table in mapper.tables:
            spec = self.tracking.spec(table.name)
            if spec is None:
                continue
            key = tuple(canonical(v) for v in mapper.primary_key_from_instance(obj))
            scopes: dict[str, set[str]] = {}
            complete = True
            changed: set[str] = set()
            for column in table.columns:
                try:
                    prop = mapper.get_property_by_column(column)
                except UnmappedColumnError:
                    continue  # a column this mapper leaves alone
                attr = state.attrs[prop.key]
                hist = attr.history
                if op == "update" and hist.has_changes():
                    changed.add(column.name)
                if column.name not in spec.scope_columns:
                    continue
                values = (
                    [*hist.added, *hist.deleted, *hist.unchanged]
                    if op == "update"
                    else [attr.value]
                )
                values = [v for v in values if v is not NO_VALUE]
                if not values:
                    complete = False
                    continue
                scopes.setdefault(column.name, set()).update(canonical(v) for v in values)
            out.append(
                Change(
                    table=table.name,
                    op=op,
                    key=key,
                    scopes={k: frozenset(v) for k, v in scopes.items()},
                    columns=frozenset(changed) if op == "update" else None,
                    scopes_complete=complete,
                )
            )
            if op == "delete":
                out.extend(self._cascades(spec, key))
        return out

    def _cascades(self, spec: TableSpec, key: tuple[str, ...]) -> list[Change]:
        if len(key) != 1:
            return [
                Change(table=child, op="delete", scopes_complete=False)
                for child, _ in spec.cascades
            ]
        return [
            Change(table=child, op="delete", scopes={column: frozenset(key)}, scopes_complete=False)
            for child, column in spec.cascades
            if self.tracking.spec(child) is not None
        ]

    def _association_changes(self, obj: Any, *, deleted: bool) -> list[Change]:
        state = inspect(obj)
        out: list[Change] = []
        for rel in state.mapper.relationships:
            secondary = rel.secondary
            if secondary is None or not hasattr(secondary, "name"):
                continue
            spec = self.tracking.spec(secondary.name)
            if spec is None:
                continue
            parent_values = {
                sec_col.name: getattr(obj, state.mapper.get_property_by_column(parent_col).key)
                for parent_col, sec_col in rel.synchronize_pairs
            }
            if deleted:
                out.append(
                    Change(
                        table=spec.name,
                        op="delete",
                        scopes_complete=False,
                        scopes=_scopes_of(spec, parent_values),
                    )
                )
                continue
            hist = state.attrs[rel.key].history
            pairs: tuple[tuple[Operation, Any], ...] = (
                ("insert", hist.added),
                ("delete", hist.deleted),
            )
            for op, children in pairs:
                for child in children:
                    child_mapper = inspect(child).mapper
                    row = dict(parent_values)
                    for child_col, sec_col in rel.secondary_synchronize_pairs or ():
                        row[sec_col.name] = getattr(
                            child, child_mapper.get_property_by_column(child_col).key
                        )
                    out.append(_row_change(spec, op, row))
        return out

    # -- statements run through session.execute --

    def _on_execute(self, state: ORMExecuteState) -> None:
        statement = state.statement
        if isinstance(statement, TextClause):
            change = self._text_change(statement.text)
            if change is not None:
                self._record(state.session, [change])
            return
        if not (state.is_insert or state.is_update or state.is_delete):
            return
        table = getattr(statement, "table", None)
        name = getattr(table, "name", None)
        spec = self.tracking.spec(name) if name else None
        if spec is None:
            return
        op: Operation = "insert" if state.is_insert else "update" if state.is_update else "delete"
        params = state.parameters
        if op == "insert" and isinstance(params, list | tuple) and len(params) > MAX_ROWS_PER_TABLE:
            self._record_bulk_insert(state.session, spec, params)
            return
        if op == "insert":
            rows = _statement_rows(statement, state.parameters)
        else:
            # Only ORM bulk UPDATE by primary key names its rows; a WHERE clause does not.
            params = state.parameters
            rows = [_plain(p) for p in params] if isinstance(params, list | tuple) else None
        changes: list[Change]
        if op == "delete" or not rows:
            changes = [Change(table=spec.name, op=op, scopes_complete=False)]
        else:
            changes = [_row_change(spec, op, row) for row in rows]
        self._record(state.session, changes)

    def _on_bulk_insert(self, session: Session, table: Table, batch: Columns) -> None:
        spec = self.tracking.spec(str(table.name))
        if spec is None:
            return
        if len(batch) > MAX_ROWS_PER_TABLE:
            self._record_bulk_insert(session, spec, batch)
        else:
            self._record(session, [_row_change(spec, "insert", row) for row in batch.rows()])

    def _record_bulk_insert(
        self, session: Session, spec: TableSpec, rows: Columns | Sequence[Mapping[Any, Any]]
    ) -> None:
        """A bulk import: commit would coalesce these rows into one key-less change per
        scope anyway, so build that directly instead of one Change per row."""
        self._record(session, [_bulk_insert_change(spec, rows)])
        session.info.setdefault(COALESCE, set()).add(spec.name)

    def _text_change(self, sql: str) -> Change | None:
        if _READ.match(sql) and not _DML.match(sql):
            return None
        match = _DML.match(sql)
        if match is None:
            return Change(table=ALL_TABLES, op="update", scopes_complete=False)
        name = (match.group(3) or match.group(2)).lower()
        spec = self.tracking.spec(name)
        if spec is None:
            return None
        verb = match.group(1).lower()
        op: Operation = "update"
        if verb.startswith(("insert", "replace")):
            op = "insert"
        elif verb.startswith(("delete", "truncate")):
            op = "delete"
        return Change(table=spec.name, op=op, scopes_complete=False)


# A table with more row changes than this in one transaction is logged per scope instead
# (bulk imports): the log row stays small and every cache depending on it is still hit.
MAX_ROWS_PER_TABLE = 1_000


def coalesce(
    changes: list[Change], limit: int = MAX_ROWS_PER_TABLE, force: Iterable[str] = ()
) -> list[Change]:
    """Replace a table's row-level changes by one key-less change per operation when a
    transaction touches more than ``limit`` of its rows (or the table is in ``force``)."""
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.table] = counts.get(change.table, 0) + 1
    for table in force:
        if table in counts:
            counts[table] = limit + 1
    if all(n <= limit for n in counts.values()):
        return changes
    kept: list[Change] = []
    merged: dict[tuple[str, str], tuple[dict[str, set[str]], bool, set[str] | None]] = {}
    for change in changes:
        if counts[change.table] <= limit:
            kept.append(change)
            continue
        scopes, complete, columns = merged.setdefault((change.table, change.op), ({}, True, set()))
        for column, values in change.scopes.items():
            scopes.setdefault(column, set()).update(values)
        merged[(change.table, change.op)] = (
            scopes,
            complete and change.scopes_complete,
            None if columns is None or change.columns is None else columns | change.columns,
        )
    for (table, op), (scopes, complete, columns) in merged.items():
        kept.append(
            Change(
                table=table,
                op=op,  # type: ignore[arg-type]
                scopes={c: frozenset(v) for c, v in scopes.items()},
                columns=frozenset(columns) if columns is not None and op == "update" else None,
                scopes_complete=complete,
            )
        )
    return kept


_ABSENT = object()


def _bulk_insert_change(spec: TableSpec, rows: Columns | Sequence[Mapping[Any, Any]]) -> Change:
    """One key-less insert naming every scope value of ``rows`` (executemany parameters or
    a bulk insert's columns): what :func:`coalesce` makes of their row-level changes, at a
    set per scope column instead of a Change per row."""
    scopes: dict[str, frozenset[str]] = {}
    complete = True
    for column in spec.scope_columns:
        if isinstance(rows, Columns):
            values = set(rows[column]) if column in rows else {_ABSENT}
        else:
            values = {row.get(column, _ABSENT) for row in rows}
        named: set[str] = set()
        for value in values:
            if value is _ABSENT:
                complete = False
                continue
            if hasattr(value, "value") and hasattr(value, "type"):  # a BindParameter
                value = value.value
            elif hasattr(value, "__clause_element__") or hasattr(value, "compile"):
                complete = False  # computed by the database
                continue
            named.add(canonical(value))
        if named:
            scopes[column] = frozenset(named)
    return Change(table=spec.name, op="insert", scopes=scopes, scopes_complete=complete)


def _scopes_of(spec: TableSpec, row: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    return {c: frozenset([canonical(row[c])]) for c in spec.scope_columns if c in row}


def _row_change(spec: TableSpec, op: Operation, row: Mapping[str, Any]) -> Change:
    has_key = all(c in row and row[c] is not None for c in spec.key_columns)
    key = tuple(canonical(row[c]) for c in spec.key_columns) if has_key else None
    scopes = _scopes_of(spec, row)
    complete = len(scopes) == len(spec.scope_columns)
    columns = frozenset(row) - set(spec.key_columns) if op == "update" else None
    if op == "update":
        # A by-key bulk update only knows new scope values; old ones are unknown.
        complete = complete and not (columns or frozenset()) & set(spec.scope_columns)
    return Change(
        table=spec.name,
        op=op,
        key=key,
        scopes=scopes,
        columns=columns,
        scopes_complete=complete,
    )


def _statement_rows(statement: Any, parameters: Any) -> list[dict[str, Any]] | None:
    """The rows a DML statement writes, or None when they cannot be known."""
    if isinstance(parameters, list | tuple) and parameters:
        return [_plain(p) for p in parameters]
    if isinstance(parameters, Mapping) and parameters:
        if getattr(statement, "_multi_values", None) or getattr(statement, "_values", None):
            return None
        return [_plain(parameters)]
    multi = getattr(statement, "_multi_values", None)
    if multi:
        rows = []
        for group in multi:
            for row in group:
                if not isinstance(row, Mapping):
                    return None
                rows.append(_plain(row))
        return rows
    values = getattr(statement, "_values", None)
    if values:
        return [_plain(values)]
    return []


def _plain(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        name = getattr(key, "key", key)
        if hasattr(value, "value") and hasattr(value, "type"):  # a BindParameter
            value = value.value
        elif hasattr(value, "__clause_element__") or hasattr(value, "compile"):
            continue  # a SQL expression: its value is computed by the database
        out[str(name)] = value
    return out
