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
the session and are not seen.

Commit: ``before_commit`` of the outermost transaction flushes, then hands each observer the
items of its that survived (a rolled-back savepoint's are dropped), phase by phase
(``DERIVE``, ``LOG``), then awaits the ``VERIFY`` and ``ANNOUNCE`` hooks (from the sync event,
through SQLAlchemy's greenlet: every commit of an ``AsyncSession`` runs there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, event, inspect
from sqlalchemy.orm import Mapper, Session, SessionTransaction
from sqlalchemy.orm.session import ORMExecuteState
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.util import await_only

from lockstep.db import images
from lockstep.db.columns import Columns
from lockstep.db.statements import classify
from lockstep.db.writes import (
    MISSING,
    Image,
    Operation,
    Phase,
    RowWrite,
    StatementWrite,
    Write,
    WriteObserver,
)

PhaseHook = Callable[[Session], Awaitable[None]]

WRITES_OPTION = "lockstep_writes"
"""Execution option naming the tables a statement writes (every row of each may change)."""

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
        event.listen(cls, "before_flush", self._before_flush)
        event.listen(cls, "after_flush", self._after_flush)
        event.listen(cls, "do_orm_execute", self._on_execute)
        event.listen(cls, "after_soft_rollback", self._after_soft_rollback)
        event.listen(cls, "before_commit", self._before_commit)
        event.listen(cls, "after_commit", self._after_commit)
        self._wrap_legacy_bulk(cls)

    # -- registration ----------------------------------------------------------------------------

    def observe(self, observer: WriteObserver) -> None:
        """Deliver every write from now on to ``observer``."""
        if observer.phase not in (Phase.DERIVE, Phase.LOG):
            raise ValueError("a write observer commits in Phase.DERIVE or Phase.LOG")
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
    def _state(session: Session) -> _Transaction:
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
        state = self._state(session)
        savepoint = session.get_nested_transaction()
        for index in followed.observers:
            for item in self.observers[index].observe(session, write):
                state.pending.append((savepoint, index, item))

    def record(self, session: Session, observer: WriteObserver, items: Iterable[Any]) -> None:
        """Add ``items`` for ``observer`` as if it had returned them for a write now (for
        writes an earlier commit phase makes itself, such as rollup rows)."""
        index = self.observers.index(observer)
        state = self._state(session)
        savepoint = session.get_nested_transaction()
        state.pending.extend((savepoint, index, item) for item in items)

    def inserted(self, session: Session, table: Table, rows: Columns) -> None:
        """Rows :func:`~lockstep.db.bulk_insert` is about to write."""
        self._state(session).wrote = True
        self.emit(session, RowWrite(str(table.name), "insert", table, after=rows))

    # -- savepoints and commit -------------------------------------------------------------------

    def _after_soft_rollback(self, session: Session, previous: SessionTransaction) -> None:
        if previous.nested:
            # Keep the object, not its id alone: a later savepoint could reuse a freed id.
            self._state(session).rolled_back[id(previous)] = previous
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
        state = self._state(session)
        if state.committing:
            return
        # Commit flushes after this event; flush now so the last writes are seen too.
        session.flush()
        state.committing = True
        try:
            for phase in (Phase.DERIVE, Phase.LOG):
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

    # -- ORM flushes -----------------------------------------------------------------------------

    def _tables(self, mapper: Mapper[Any]) -> Iterable[tuple[Table, _Followed]]:
        for table in mapper.tables:
            if isinstance(table, Table):
                followed = self.followed(str(table.name))
                if followed is not None:
                    yield table, followed

    def _before_flush(self, session: Session, _context: Any, _instances: Any) -> None:
        state = self._state(session)
        if session.new or session.deleted or session.dirty:
            state.wrote = True
        if not self.observers:
            return
        wanted: dict[Table, list[tuple[Any, ...]]] = {}
        doomed: dict[Table, list[tuple[Any, ...]]] = {}
        for obj in session.dirty:
            if session.is_modified(obj, include_collections=False):
                self._want(inspect(obj), wanted)
        for obj in session.deleted:
            obj_state = inspect(obj)
            self._want(obj_state, wanted)
            if obj_state.key is not None:
                for table in obj_state.mapper.tables:
                    if isinstance(table, Table):
                        doomed.setdefault(table, []).append(tuple(obj_state.key[1]))
        lock = session.get_bind().dialect.name == "postgresql"
        for table, keys in wanted.items():
            followed = self.followed(str(table.name))
            assert followed is not None
            for key, image in images.read_by_key(
                session, table, followed.columns, keys, lock=lock
            ).items():
                state.before[(str(table.name), key)] = image
        for table, keys in doomed.items():
            self._cascade(session, table, None, keys)

    def _want(self, obj_state: Any, wanted: dict[Table, list[tuple[Any, ...]]]) -> None:
        if obj_state.key is None:
            return
        for table, _ in self._tables(obj_state.mapper):
            wanted.setdefault(table, []).append(tuple(obj_state.key[1]))

    def _after_flush(self, session: Session, context: Any) -> None:
        if not self.observers:
            return
        state = self._state(session)
        before = state.before
        state.before = {}
        writes: dict[tuple[Table, Operation], _Rows] = {}
        for obj in session.new:
            obj_state = inspect(obj)
            for table, followed in self._tables(obj_state.mapper):
                rows = writes.setdefault((table, "insert"), _Rows())
                rows.after.append(images.object_image(obj_state, table, followed.columns))
        for obj in session.dirty:
            if not session.is_modified(obj, include_collections=False):
                continue
            obj_state = inspect(obj)
            for table, followed in self._tables(obj_state.mapper):
                key = tuple(obj_state.key[1])
                old = before.get((str(table.name), key))
                if old is None:
                    # Modified after the read before the flush (by another before_flush
                    # listener): what it loaded is the best image left.
                    old = images.history_image(obj_state, table, followed.columns)
                changed = images.changed_columns(obj_state, table)
                new = dict(old)
                now = images.object_image(obj_state, table, followed.columns)
                for column in changed & set(now):
                    new[column] = now[column]
                rows = writes.setdefault((table, "update"), _Rows())
                rows.before.append(old)
                rows.after.append(new)
                rows.changed |= changed
        for obj_state in _deleted_states(session, context):
            for table, followed in self._tables(obj_state.mapper):
                old = None
                if obj_state.key is not None:
                    old = before.get((str(table.name), tuple(obj_state.key[1])))
                if old is None:
                    old = images.object_image(obj_state, table, followed.columns)
                writes.setdefault((table, "delete"), _Rows()).before.append(old)
        self._reread_missing(session, writes)
        for (table, op), rows in writes.items():
            self.emit(
                session,
                RowWrite(
                    str(table.name),
                    op,
                    table,
                    before=rows.before,
                    after=rows.after,
                    changed=frozenset(rows.changed) if op == "update" else None,
                ),
            )
        for write in self._association_writes(session):
            self.emit(session, write)

    def _reread_missing(
        self, session: Session, writes: dict[tuple[Table, Operation], _Rows]
    ) -> None:
        """After-images with values the flush left to the database (server defaults,
        SQL expressions): read them back by key (the rows are this transaction's)."""
        for (table, op), rows in writes.items():
            if op == "delete":
                continue
            pk = [c.name for c in table.primary_key.columns]
            missing = [
                i for i, row in enumerate(rows.after) if any(v is MISSING for v in row.values())
            ]
            if not missing:
                continue
            followed = self.followed(str(table.name))
            assert followed is not None
            keys = [images.key_of(rows.after[i], pk) for i in missing]
            found = images.read_by_key(
                session, table, followed.columns, [k for k in keys if k is not None], lock=False
            )
            for i, key in zip(missing, keys, strict=True):
                if key is not None and key in found:
                    rows.after[i] = found[key]

    def _association_writes(self, session: Session) -> list[Write]:
        """Rows of many-to-many tables this flush changed through relationship collections."""
        out: list[Write] = []
        for obj in (*session.new, *session.dirty, *session.deleted):
            obj_state = inspect(obj)
            deleted = obj in session.deleted
            for rel in obj_state.mapper.relationships:
                secondary = rel.secondary
                if not isinstance(secondary, Table):
                    continue
                name = str(secondary.name)
                if self.followed(name) is None:
                    continue
                parent = {
                    str(sec_col.name): getattr(
                        obj, obj_state.mapper.get_property_by_column(parent_col).key
                    )
                    for parent_col, sec_col in rel.synchronize_pairs
                }
                if deleted:
                    where = images.matching(
                        [secondary.c[c] for c in parent], [tuple(parent.values())]
                    )
                    known = {c: frozenset([v]) for c, v in parent.items()}
                    out.append(StatementWrite(name, "delete", secondary, where, known=known))
                    continue
                history = obj_state.attrs[rel.key].history
                for op, children in (("insert", history.added), ("delete", history.deleted)):
                    rows = []
                    for child in children:
                        child_mapper = inspect(child).mapper
                        row = dict(parent)
                        for child_col, sec_col in rel.secondary_synchronize_pairs or ():
                            row[str(sec_col.name)] = getattr(
                                child, child_mapper.get_property_by_column(child_col).key
                            )
                        rows.append(row)
                    if rows:
                        out.append(
                            RowWrite(
                                name,
                                op,  # type: ignore[arg-type]
                                secondary,
                                before=rows if op == "delete" else (),
                                after=rows if op == "insert" else (),
                            )
                        )
        return out

    def _cascade(
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

    # -- statements run through session.execute -------------------------------------------------

    def _on_execute(self, state: ORMExecuteState) -> Any:
        statement = state.statement
        session = state.session
        if state.is_insert or state.is_update or state.is_delete:
            self._state(session).wrote = True
        if not self.observers:
            return None
        declared = state.execution_options.get(WRITES_OPTION)
        if declared:
            self._state(session).wrote = True
            for name in declared:
                self.emit(session, StatementWrite(str(name), "update", sql=str(statement)))
            return None
        if isinstance(statement, TextClause | TextualSelect):
            text = statement.text if isinstance(statement, TextClause) else _text_of(statement)
            for target in classify(text):
                self._state(session).wrote = True
                self.emit(session, StatementWrite(target.table, target.op, sql=text))
            return None
        if not (state.is_insert or state.is_update or state.is_delete):
            return None
        table: Any = getattr(statement, "table", None)
        if hasattr(table, "_deannotate"):
            table = table._deannotate()  # ORM statements carry an annotated copy
        if not isinstance(table, Table):
            return None
        if (state.is_update or state.is_delete) and state.is_orm_statement and session.autoflush:
            # The ORM autoflushes before running the statement, but after this event: flush
            # now so what observers read below includes the pending objects it touches.
            session.flush()
        if state.is_delete:
            where = getattr(statement, "whereclause", None)
            self._cascade(session, table, where, None)
        name = str(table.name)
        if self.followed(name) is None:
            return None
        if state.is_insert:
            return self._insert(state, table)
        if state.is_update:
            return self._update(state, table)
        where = getattr(statement, "whereclause", None)
        self.emit(session, StatementWrite(name, "delete", table, where, params=state.parameters))
        return None

    def _insert(self, state: ORMExecuteState, table: Table) -> Any:
        statement: Any = state.statement
        name = str(table.name)
        upsert = getattr(statement, "_post_values_clause", None) is not None
        rows = (
            None
            if upsert or statement.select is not None
            else (images.statement_rows(statement, state.parameters))
        )
        if rows is None:
            op: Operation = "update" if upsert else "insert"
            self.emit(state.session, StatementWrite(name, op, table, params=state.parameters))
            return None
        if _plain_rows(rows, table):
            after: list[Any] = list(rows)  # executemany of plain values keyed by column name
        else:
            mapper = _mapper_of(state)
            after = [images.plain(row, table, mapper) for row in rows]
        result = state.invoke_statement()
        self.emit(state.session, RowWrite(name, "insert", table, after=after))
        return result

    def _update(self, state: ORMExecuteState, table: Table) -> Any:
        statement: Any = state.statement
        params = state.parameters
        name = str(table.name)
        mapper = _mapper_of(state)
        if (
            isinstance(params, list | tuple)
            and params
            and state.is_orm_statement
            and statement.whereclause is None
        ):
            rows = [images.plain(p, table, mapper) for p in params]
            return self._by_key(state.session, [(table, rows)], state.invoke_statement)
        values = dict(statement._values or {})
        ordered = getattr(statement, "_ordered_values", None)
        if ordered:
            values.update(dict(ordered))
        if isinstance(params, dict):
            values.update(params)
        self.emit(
            state.session,
            StatementWrite(
                name,
                "update",
                table,
                statement.whereclause,
                params=params,
                values=images.plain(values, table, mapper),
            ),
        )
        return None

    def _by_key(
        self,
        session: Session,
        rows_by_table: Sequence[tuple[Table, Sequence[dict[str, Any]]]],
        run: Callable[[], Any],
        changed: frozenset[str] | None = None,
    ) -> Any:
        """Updates of rows named by primary key: images read before ``run`` (locked on
        PostgreSQL) and after it. ``changed``: the columns set (default: the rows' keys)."""
        lock = session.get_bind().dialect.name == "postgresql"
        plans = []
        for table, rows in rows_by_table:
            followed = self.followed(str(table.name))
            assert followed is not None
            pk = [c.name for c in table.primary_key.columns]
            keys = [images.key_of(row, pk) for row in rows]
            if any(k is None for k in keys):
                # Rows without their keys cannot be named: any row of the table may change.
                self.emit(session, StatementWrite(str(table.name), "update", table))
                continue
            named = [k for k in keys if k is not None]
            old = images.read_by_key(session, table, followed.columns, named, lock=lock)
            set_columns = changed or frozenset(c for row in rows for c in row) - set(pk)
            plans.append((table, followed, named, old, set_columns))
        result = run()
        for table, followed, named, old, set_columns in plans:
            new = images.read_by_key(session, table, followed.columns, named, lock=False)
            found = [k for k in dict.fromkeys(named) if k in old and k in new]
            self.emit(
                session,
                RowWrite(
                    str(table.name),
                    "update",
                    table,
                    before=[old[k] for k in found],
                    after=[new[k] for k in found],
                    changed=set_columns,
                ),
            )
        return result

    # -- the legacy bulk methods (they bypass flush events and do_orm_execute) -----------------

    def _wrap_legacy_bulk(self, cls: type[Session]) -> None:
        interception = self
        insert_mappings = cls.bulk_insert_mappings
        update_mappings = cls.bulk_update_mappings
        save_objects = cls.bulk_save_objects

        def bulk_insert_mappings(
            session: Session, mapper: Any, mappings: Any, *args: Any, **kwargs: Any
        ) -> None:
            interception._state(session).wrote = True
            mappings = list(mappings)  # read twice: by SQLAlchemy and by us
            insert_mappings(session, mapper, mappings, *args, **kwargs)
            found = _mapper(mapper)
            for table, _ in interception._tables(found):
                after = [images.plain(m, table, found) for m in mappings]
                interception.emit(session, RowWrite(str(table.name), "insert", table, after=after))

        def bulk_update_mappings(session: Session, mapper: Any, mappings: Any) -> None:
            interception._state(session).wrote = True
            mappings = list(mappings)
            found = _mapper(mapper)
            rows = [
                (table, [images.plain(m, table, found) for m in mappings])
                for table, _ in interception._tables(found)
            ]
            interception._by_key(session, rows, lambda: update_mappings(session, mapper, mappings))

        def bulk_save_objects(session: Session, objects: Any, *args: Any, **kwargs: Any) -> None:
            interception._state(session).wrote = True
            objects = list(objects)
            states = [inspect(o) for o in objects]
            new = [obj_state.key is None for obj_state in states]  # known before they run
            keyed: dict[Table, list[dict[str, Any]]] = {}
            changed: set[str] = set()
            for obj_state, is_new in zip(states, new, strict=True):
                if is_new:
                    continue
                for table, followed in interception._tables(obj_state.mapper):
                    image = images.object_image(obj_state, table, followed.columns)
                    keyed.setdefault(table, []).append(image)
                    changed |= images.changed_columns(obj_state, table)
            interception._by_key(
                session,
                list(keyed.items()),
                lambda: save_objects(session, objects, *args, **kwargs),
                frozenset(changed),
            )
            for obj_state, is_new in zip(states, new, strict=True):
                if not is_new:
                    continue
                for table, followed in interception._tables(obj_state.mapper):
                    after = [images.object_image(obj_state, table, followed.columns)]
                    interception.emit(
                        session, RowWrite(str(table.name), "insert", table, after=after)
                    )

        cls.bulk_insert_mappings = bulk_insert_mappings  # type: ignore[method-assign,assignment]
        cls.bulk_update_mappings = bulk_update_mappings  # type: ignore[method-assign,assignment]
        cls.bulk_save_objects = bulk_save_objects  # type: ignore[method-assign,assignment]


@dataclass(slots=True)
class _Rows:
    before: list[Image] = field(default_factory=list)
    after: list[Image] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)


def _text_of(statement: TextualSelect) -> str:
    element: Any = statement.element
    return str(element.text)


def _plain_rows(rows: Sequence[Any], table: Table) -> bool:
    """Rows an executemany gives as plain values keyed by column name (the first row
    decides: an executemany's rows all have the same keys)."""
    first = rows[0]
    return (
        len(rows) > 1
        and type(first) is dict
        and all(type(k) is str and k in table.c and table.c[k].name == k for k in first)
    )


def _mapper(entity: Any) -> Mapper[Any]:
    found: Any = inspect(entity)
    return found if isinstance(found, Mapper) else found.mapper


def _mapper_of(state: ORMExecuteState) -> Mapper[Any] | None:
    found = state.bind_mapper
    return found if isinstance(found, Mapper) else None


def _deleted_states(session: Session, context: Any) -> list[Any]:
    """Objects this flush deleted: the session's, plus those the unit of work added by ORM
    cascades (``delete`` cascades on relationships not loaded before the flush)."""
    states = {id(s): s for s in (inspect(obj) for obj in session.deleted)}
    for state, (is_delete, list_only) in getattr(context, "states", {}).items():
        if is_delete and not list_only:
            states.setdefault(id(state), state)
    return list(states.values())
