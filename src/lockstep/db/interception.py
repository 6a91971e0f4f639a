"""The one write-interception layer of a :class:`~lockstep.db.Database`'s sessions.

Hand-written because no library does this inside the writing transaction: SQLAlchemy's
events say that a flush or a statement happened; this module turns every way a write can
happen into :mod:`lockstep.db.writes` events, keeps what observers make of them per
savepoint, and runs the commit phases in a fixed order. The change feed and rollup
maintenance are observers; so is anything that needs to see every write.

What each write path produces:

=======================================================  =====================================
ORM flush: new / modified / deleted objects               ``RowWrite`` per table and operation;
                                                          modified and deleted rows read by key
                                                          *before* the flush (``FOR UPDATE`` on
                                                          PostgreSQL), so images are the
                                                          database's, not stale objects'
ORM many-to-many collection changes                       ``RowWrite`` of the association table
deleting rows of a table other tables reference           ``StatementWrite`` per child table the
with ON DELETE CASCADE / SET NULL (ORM or Core)           database changes, before the delete
``insert(T)`` with rows (executemany, ``VALUES``,         ``RowWrite`` after it ran
``RETURNING``) and :func:`~lockstep.db.bulk_insert`
``update(Model)`` with a list of rows by primary key,     ``RowWrite`` with images read by key
``bulk_update_mappings``, ``bulk_save_objects``           before and after
``update()/delete()`` with a WHERE (or none),             ``StatementWrite`` before it runs
``INSERT ... SELECT``, upserts
``text()`` (and anything with ``lockstep_writes``)        ``StatementWrite`` per table named by
                                                          :func:`~lockstep.db.statements.classify`
                                                          or declared; unattributable → refused
=======================================================  =====================================

Statements run on a raw connection (``session.connection().execute``, an engine) bypass
the session and are not seen. The flush path lives in :mod:`lockstep.db.flushes`, the
statement path (and the legacy bulk methods) in :mod:`lockstep.db.executions`; this module
holds what they share: who follows which table, the savepoints, and the commit phases.

Commit: ``before_commit`` of the outermost transaction flushes, then hands each observer the
items of its that survived (a rolled-back savepoint's are dropped), phase by phase
(``DERIVE``, ``LOG``), then awaits the ``VERIFY`` and ``ANNOUNCE`` hooks (from the sync event,
through SQLAlchemy's greenlet: every commit of an ``AsyncSession`` runs there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.orm import Mapper, Session, SessionTransaction
from sqlalchemy.util import await_only

from lockstep.db import images
from lockstep.db.columns import Columns
from lockstep.db.executions import StatementWrites
from lockstep.db.flushes import FlushWrites
from lockstep.db.writes import (
    Image,
    Phase,
    RowWrite,
    StatementWrite,
    Write,
    WriteObserver,
)

PhaseHook = Callable[[Session], Awaitable[None]]

_OBSERVER_PHASES = (Phase.DERIVE, Phase.LOG, Phase.RECORD)  # in the order they run

_STATE = "lockstep.writes"
_ATTRIBUTE = "_lockstep_interception"


@dataclass(frozen=True, slots=True)
class _Followed:
    """A table some observers follow: who, and which columns row images carry."""

    observers: tuple[int, ...]
    columns: tuple[str, ...]  # watched by any follower (the primary key comes with images)


@dataclass(slots=True)
class _Transaction:
    """What the interception holds for one outermost transaction of a session."""

    pending: list[tuple[SessionTransaction | None, int, Any]] = field(default_factory=list)
    rolled_back: dict[int, SessionTransaction] = field(default_factory=dict)
    before: dict[tuple[str, tuple[Any, ...]], Image] = field(default_factory=dict)
    committing: bool = False
    wrote: bool = False  # any write through the session, followed or not


def interception_of(session_class: type[Session]) -> Interception:
    """The interception installed on ``session_class`` (installed on first use)."""
    found: Interception | None = session_class.__dict__.get(_ATTRIBUTE)
    if found is None:
        found = Interception(session_class)
        setattr(session_class, _ATTRIBUTE, found)
    return found


class Interception:
    """Turns the writes of one session class into events for its observers."""

    def __init__(self, session_class: type[Session]) -> None:
        self.observers: list[WriteObserver] = []
        self.hooks: dict[Phase, list[PhaseHook]] = {Phase.VERIFY: [], Phase.ANNOUNCE: []}
        self._followed: dict[str, _Followed | None] = {}
        cls = session_class
        flushes = FlushWrites(self)
        statements = StatementWrites(self)
        event.listen(cls, "before_flush", flushes.before_flush)
        event.listen(cls, "after_flush", flushes.after_flush)
        event.listen(cls, "do_orm_execute", statements.on_execute)
        event.listen(cls, "after_soft_rollback", self._after_soft_rollback)
        event.listen(cls, "before_commit", self._before_commit)
        event.listen(cls, "after_commit", self._after_commit)
        statements.wrap_legacy_bulk(cls)

    # -- registration ----------------------------------------------------------------------------

    def observe(self, observer: WriteObserver) -> None:
        """Deliver every write from now on to ``observer``."""
        if observer.phase not in _OBSERVER_PHASES:
            raise ValueError("a write observer commits in Phase.DERIVE, LOG or RECORD")
        self.observers.append(observer)
        self._followed.clear()

    def add_hook(self, phase: Phase, hook: PhaseHook) -> None:
        """Await ``hook(session)`` in ``phase`` (``VERIFY`` or ``ANNOUNCE``) of every commit."""
        self.hooks[phase].append(hook)

    def followed(self, name: str) -> _Followed | None:
        try:
            return self._followed[name]
        except KeyError:
            pass
        who: list[int] = []
        columns: dict[str, None] = {}
        for index, observer in enumerate(self.observers):
            watched = observer.watched(name)
            if watched is not None:
                who.append(index)
                columns.update(dict.fromkeys(watched))
        found = _Followed(tuple(who), tuple(columns)) if who else None
        self._followed[name] = found
        return found

    # -- delivering ------------------------------------------------------------------------------

    @staticmethod
    def state(session: Session) -> _Transaction:
        state: _Transaction | None = session.info.get(_STATE)
        if state is None:
            state = session.info[_STATE] = _Transaction()
        return state

    def wrote(self, session: Session) -> bool:
        """Whether the transaction under way has written anything through the session (a
        flush with changes, DML, bulk inserts), to any table."""
        state: _Transaction | None = session.info.get(_STATE)
        return state is not None and state.wrote

    def emit(self, session: Session, write: Write) -> None:
        """Deliver ``write`` to the observers following its table; keep what they return
        with the current savepoint."""
        followed = self.followed(write.table)
        if followed is None:
            return
        state = self.state(session)
        savepoint = session.get_nested_transaction()
        for index in followed.observers:
            for item in self.observers[index].observe(session, write):
                state.pending.append((savepoint, index, item))

    def record(self, session: Session, observer: WriteObserver, items: Iterable[Any]) -> None:
        """Add ``items`` for ``observer`` as if it had returned them for a write now (for
        writes an earlier commit phase makes itself, such as rollup rows)."""
        index = self.observers.index(observer)
        state = self.state(session)
        savepoint = session.get_nested_transaction()
        state.pending.extend((savepoint, index, item) for item in items)

    def inserted(self, session: Session, table: Table, rows: Columns) -> None:
        """Rows :func:`~lockstep.db.bulk_insert` is about to write."""
        self.state(session).wrote = True
        self.emit(session, RowWrite(str(table.name), "insert", table, after=rows))

    # -- savepoints and commit -------------------------------------------------------------------

    def _after_soft_rollback(self, session: Session, previous: SessionTransaction) -> None:
        if previous.nested:
            # Keep the object, not its id alone: a later savepoint could reuse a freed id.
            self.state(session).rolled_back[id(previous)] = previous
        elif previous.parent is None:
            session.info.pop(_STATE, None)
            for observer in self.observers:
                observer.rolled_back(session)

    def _surviving(self, state: _Transaction, index: int) -> list[Any]:
        kept = []
        for savepoint, owner, item in state.pending:
            if owner != index:
                continue
            node = savepoint
            while node is not None and id(node) not in state.rolled_back:
                node = node.parent
            if node is None:
                kept.append(item)
        return kept

    def _before_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return  # a savepoint is released; the outer transaction decides
        state = self.state(session)
        if state.committing:
            return
        # Commit flushes after this event; flush now so the last writes are seen too.
        session.flush()
        state.committing = True
        try:
            for phase in _OBSERVER_PHASES:
                for index, observer in enumerate(self.observers):
                    if observer.phase is phase:
                        observer.commit(session, self._surviving(state, index))
            for phase in (Phase.VERIFY, Phase.ANNOUNCE):
                for hook in self.hooks[phase]:
                    await_only(hook(session))
        finally:
            state.committing = False

    def _after_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return  # a savepoint was released (SQLAlchemy fires after_commit for those too)
        session.info.pop(_STATE, None)
        for observer in self.observers:
            observer.committed(session)

    # -- shared by the flush and statement paths ------------------------------------------------

    def tables(self, mapper: Mapper[Any]) -> Iterable[tuple[Table, _Followed]]:
        for table in mapper.tables:
            if isinstance(table, Table):
                followed = self.followed(str(table.name))
                if followed is not None:
                    yield table, followed

    def cascade(
        self,
        session: Session,
        table: Table,
        where: Any,
        keys: Sequence[tuple[Any, ...]] | None,
    ) -> None:
        """Announce, before a delete of ``table`` rows runs, what the database will change in
        the tables referencing it."""
        for cascade in images.cascades(table, where, keys):
            child = cascade.child
            values = {cascade.column: None} if cascade.op == "update" else {}
            self.emit(
                session,
                StatementWrite(
                    str(child.name),
                    cascade.op,
                    child,
                    cascade.where,
                    values=values,
                    known=cascade.known,
                ),
            )


class _Rows:
    before: list[Image] = field(default_factory=list)
    after: list[Image] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
