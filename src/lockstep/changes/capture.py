"""The change feed's observer of the write path: every write becomes :class:`Change` values,
written to the log in the same transaction.

Hand-written because no library does this inside the writing transaction. It follows the
events of lockstep's one write path (:mod:`lockstep.db.writes`) for the tracked tables,
turns them into changes, and in the ``LOG`` commit phase writes one log row (after rollup
maintenance, ``DERIVE``, so the rollup rows' changes are in it); the committed
:class:`ChangeSet` goes to the database's commit hooks.

How precisely each write is named:

* rows whose values are known (ORM objects, inserts with values, :func:`~lockstep.db.
  bulk_insert`, updates by primary key, many-to-many rows): row level, with the scope values
  the row had before (read in the transaction, under a row lock on PostgreSQL) and after;
* statements writing rows they do not name (``update()/delete()`` with a WHERE, ``INSERT ...
  SELECT``, upserts, ``text()`` DML, rows a database cascade deletes or nulls): the table,
  narrowed to the scope values every such row has when known (a cascade from case 7);
* SQL the write path cannot attribute is refused before it runs.

Savepoints rolled back discard their changes; a rolled-back transaction logs and publishes
nothing. Statements run on a raw connection bypass the session and are not captured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement

from lockstep.changes.log import Prelude, run_prelude, write_changeset
from lockstep.changes.tracking import TableSpec, Tracking
from lockstep.db import MISSING, Columns, Database, Phase, RowWrite, Write, interception_of
from lockstep.types import Change, ChangeSet, canonical

COMMITTING = "lockstep.changes.committing"  # the change set of the commit under way
COMMITTED = "lockstep.changes.committed"
COALESCE = "lockstep.changes.coalesce"  # tables whose changes are logged per scope this time
PRELUDE = "lockstep.changes.prelude"  # writes to run in the log row's statement
INSTALLED = "_lockstep_change_capture"

_UNKNOWN = object()


def committed_changesets(session: Any) -> list[ChangeSet]:
    """The change sets committed by ``session`` (an AsyncSession or Session) so far."""
    sets: list[ChangeSet] = session.info.get(COMMITTED, [])
    return sets


def committing_changeset(session: Session) -> ChangeSet | None:
    """The change set the commit under way logged (from ``Phase.LOG`` until it commits)."""
    found: ChangeSet | None = session.info.get(COMMITTING)
    return found


def defer_to_log(session: Session, prelude: Prelude) -> bool:
    """Run ``prelude`` in the statement that writes this transaction's log row, if a
    :class:`ChangeCapture` is installed on the session's class and the backend is
    PostgreSQL; False otherwise (the caller runs its writes itself).

    Call it from an earlier commit phase (``Phase.DERIVE``: rollup maintenance). The
    capture then writes the log row, or, when the transaction has nothing to log, runs the
    prelude alone."""
    if getattr(type(session), INSTALLED, None) is None:
        return False
    if session.get_bind().dialect.name != "postgresql":
        return False
    if PRELUDE in session.info:
        raise RuntimeError("this transaction already has a prelude to its log row")
    session.info[PRELUDE] = prelude
    return True


def record_changes(session: Session, changes: Iterable[Change]) -> None:
    """Add ``changes`` to the transaction's change set, for writes lockstep itself makes on
    the session's connection (rollup maintenance) that the write path never saw. They
    follow the same savepoint and rollback rules as captured changes; without a
    :class:`ChangeCapture` installed they are dropped."""
    capture: ChangeCapture | None = getattr(type(session), INSTALLED, None)
    if capture is not None:
        interception_of(type(session)).record(session, capture, changes)


class ChangeCapture:
    """Follows the writes of a database's sessions to the tables in ``tracking``."""

    phase = Phase.LOG

    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking

    def install(self, database: Database) -> None:
        setattr(database.session_class, INSTALLED, self)
        database.observe(self)

    # -- the observer ------------------------------------------------------------------------

    def watched(self, table: str) -> Sequence[str] | None:
        spec = self.tracking.spec(table)
        return None if spec is None else spec.scope_columns

    def observe(self, session: Session, write: Write) -> list[Change]:
        spec = self.tracking.spec(write.table)
        if spec is None:
            return []
        if not isinstance(write, RowWrite):
            scopes = {
                column: frozenset(canonical(v) for v in values)
                for column, values in write.known.items()
                if column in spec.scope_columns
            }
            return [Change(table=spec.name, op=write.op, scopes=scopes, scopes_complete=False)]
        if write.op == "insert":
            rows = write.after
            if len(rows) > MAX_ROWS_PER_TABLE:
                # A bulk import: commit would coalesce these rows into one key-less change per
                # scope anyway, so build that directly instead of one Change per row.
                session.info.setdefault(COALESCE, set()).add(spec.name)
                return [_bulk_insert_change(spec, rows)]
            listed = rows.rows() if isinstance(rows, Columns) else rows
            return [_row_change(spec, "insert", None, row, None) for row in listed]
        if write.op == "delete":
            return [_row_change(spec, "delete", row, None, None) for row in write.before]
        return [
            _row_change(spec, "update", old, new, write.changed)
            for old, new in zip(write.before, write.after, strict=True)  # type: ignore[arg-type]
        ]

    def commit(self, session: Session, items: list[Any]) -> None:
        forced = session.info.pop(COALESCE, set())
        prelude: Prelude | None = session.info.pop(PRELUDE, None)
        if items:
            changeset = write_changeset(
                session.connection(), coalesce(items, force=forced), prelude
            )
            session.info[COMMITTING] = changeset
        elif prelude is not None:
            run_prelude(session.connection(), prelude)

    def committed(self, session: Session) -> None:
        changeset = session.info.pop(COMMITTING, None)
        if changeset is not None:
            session.info.setdefault(COMMITTED, []).append(changeset)

    def rolled_back(self, session: Session) -> None:
        for key in (COMMITTING, COALESCE, PRELUDE):
            session.info.pop(key, None)


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


def _bulk_insert_change(spec: TableSpec, rows: Columns | Sequence[Mapping[str, Any]]) -> Change:
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
            value = _value(value)
            if value is _UNKNOWN:
                complete = False
                continue
            named.add(canonical(value))
        if named:
            scopes[column] = frozenset(named)
    return Change(table=spec.name, op="insert", scopes=scopes, scopes_complete=complete)


def _value(value: Any) -> Any:
    """A row image's value, or _UNKNOWN (absent, not loaded, computed by the database)."""
    if value is _ABSENT or value is MISSING or isinstance(value, ClauseElement):
        return _UNKNOWN
    return value


def _row_change(
    spec: TableSpec,
    op: Any,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    changed: frozenset[str] | None,
) -> Change:
    """The change of one row from its images: its key (None when not known), the scope
    values it had before and has after."""
    named = before if before is not None else after
    assert named is not None
    key_values = [_value(named.get(c, _ABSENT)) for c in spec.key_columns]
    known_key = all(v is not _UNKNOWN and v is not None for v in key_values)
    key = tuple(canonical(v) for v in key_values) if known_key else None
    scopes: dict[str, set[str]] = {}
    complete = True
    for image in (before, after):
        if image is None:
            continue
        for column in spec.scope_columns:
            value = _value(image.get(column, _ABSENT))
            if value is _UNKNOWN:
                complete = False
                continue
            scopes.setdefault(column, set()).add(canonical(value))
    return Change(
        table=spec.name,
        op=op,
        key=key,
        scopes={c: frozenset(v) for c, v in scopes.items()},
        columns=(changed or frozenset()) - set(spec.key_columns) if op == "update" else None,
        scopes_complete=complete,
    )
