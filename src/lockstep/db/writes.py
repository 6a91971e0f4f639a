"""The vocabulary of lockstep's one write path: normalized write events and commit phases.

Every way a write can reach the database through a :class:`~lockstep.db.Database` session —
ORM flushes (cascades and many-to-many rows included), ``session.execute`` of Core and ORM
DML (executemany, ``RETURNING``, CTE-prefixed, by-primary-key bulk updates), ``text()`` DML,
:func:`~lockstep.db.bulk_insert` and the legacy ``bulk_*`` session methods — is turned by
:mod:`lockstep.db.interception` into one of two events, delivered to every
:class:`WriteObserver` (the change feed, rollup maintenance; realtime and offline sync build
on the feed):

* :class:`RowWrite` — rows whose values are known: inserts with the values written, updates
  and deletes of rows named by primary key with their images *before* (read in the
  transaction, under a row lock on PostgreSQL, so a concurrent writer cannot slip in between
  the read and the write) and *after*.
* :class:`StatementWrite` — a statement that writes rows it does not name (``UPDATE ...
  WHERE``, ``INSERT ... SELECT``, upserts, ``text()`` DML, rows a database cascade deletes or
  nulls), delivered *before* it runs, so an observer can read the rows it will touch.
  ``where`` None means every row of the table may change.

SQL nobody can attribute to tables is refused (:class:`~lockstep.exceptions.
UnattributedWriteError`) rather than silently missed.

Observers keep nothing between events: what they return from :meth:`WriteObserver.observe`
is held by the interception layer with the savepoint it happened in, dropped if that
savepoint (or the transaction) rolls back, and handed back at commit, phase by phase
(:class:`Phase`), never by listener order.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import Table
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from lockstep.db.columns import Columns

Operation = Literal["insert", "update", "delete"]

Image = Mapping[str, Any]
"""A row as column name -> value: the primary key and the columns observers watch. A value
may be :data:`MISSING` (not known) or, in the rows of an insert, a SQL expression."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""An image value that is not known (not loaded, or computed by the database)."""


class Phase(enum.Enum):
    """The steps of a commit, in the order they run.

    In the transaction, synchronous (observers): ``DERIVE`` writes derived from this
    transaction's writes (rollups, the audit trail), then ``LOG`` (the change-log row), then
    ``RECORD`` (what needs the logged change set: its id and txid — the shape log, stored
    push answers). In the transaction, asynchronous, with the writes' row locks held (hooks):
    ``VERIFY`` (preconditions such as ``If-Match``; raising rolls the transaction back), then
    ``ANNOUNCE`` (cache stamps move before the locks are released). After commit: ``PUBLISH``
    (``Database.add_commit_hook``).
    """

    DERIVE = 1
    LOG = 2
    RECORD = 3
    VERIFY = 4
    ANNOUNCE = 5
    PUBLISH = 6


@dataclass(frozen=True, slots=True)
class RowWrite:
    """Rows whose values are known.

    ``before``: update/delete, the rows as they were (primary key + watched columns).
    ``after``: insert/update, the rows as written; for inserts the values given (a column
    the statement left to a default may be absent, a value may be a SQL expression the
    database computes), for updates the full watched image. ``changed``: the columns an
    update set (None when unknown). ``sa_table`` is None only for rows of a table lockstep
    knows by name alone.
    """

    table: str
    op: Operation
    sa_table: Table | None = None
    before: Sequence[Image] = ()
    after: Columns | Sequence[Image] = ()
    changed: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class StatementWrite:
    """A statement writing rows it does not name, delivered before it runs.

    ``where`` selects the rows it touches (None: any row of the table); ``params`` are the
    statement's bound values for ``where`` (one mapping, or a list for an executemany);
    ``values`` what an UPDATE sets (a value may be a SQL expression); ``known`` column values
    every touched row has (a cascade from parent keys: ``{"case_id": {7}}``); ``sql`` the
    statement text when it came as text.
    """

    table: str
    op: Operation
    sa_table: Table | None = None
    where: ColumnElement[bool] | None = None
    params: Any = None
    values: Mapping[str, Any] = field(default_factory=dict)
    known: Mapping[str, frozenset[Any]] = field(default_factory=dict)
    sql: str | None = None


Write = RowWrite | StatementWrite


class WriteObserver(Protocol):
    """Something that follows every write of a database's sessions (see the module doc)."""

    phase: Phase
    """When :meth:`commit` runs: ``Phase.DERIVE``, ``Phase.LOG`` or ``Phase.RECORD``."""

    def watched(self, table: str) -> Collection[str] | None:
        """The columns (besides the primary key) this observer needs in row images of the
        table named ``table``; None when it does not follow the table at all."""
        ...

    def observe(self, session: Session, write: Write) -> Iterable[Any]:
        """What to remember of ``write`` (kept with its savepoint). May read on the
        session's connection; may raise to refuse the write (nothing is then written)."""
        ...

    def commit(self, session: Session, items: list[Any]) -> None:
        """At commit, in its phase: everything :meth:`observe` returned that survived."""
        ...

    def committed(self, session: Session) -> None:
        """The transaction committed (its items are gone)."""
        ...

    def rolled_back(self, session: Session) -> None:
        """The outermost transaction rolled back (its items are gone)."""
        ...
