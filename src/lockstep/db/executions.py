"""Statements run through ``session.execute`` and the legacy ``bulk_*`` methods as write
events.

Part of the write path (:mod:`lockstep.db.interception`): an INSERT with rows is a
:class:`~lockstep.db.writes.RowWrite` after it ran; an UPDATE of rows named by primary key
(``update(Model)`` with a list of rows, ``bulk_update_mappings``, ``bulk_save_objects``) a
``RowWrite`` with images read before (locked) and after; an UPDATE or DELETE with a WHERE,
``INSERT ... SELECT``, an upsert, ``text()`` DML and anything with the ``lockstep_writes``
execution option a :class:`~lockstep.db.writes.StatementWrite` before it runs; a DELETE
announces what the database will cascade. The legacy ``bulk_*`` methods bypass flush events
and ``do_orm_execute``, so they are wrapped on the session class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, inspect
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.session import ORMExecuteState
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import TextualSelect

from lockstep.db import images
from lockstep.db.statements import classify
from lockstep.db.writes import Operation, RowWrite, StatementWrite

if TYPE_CHECKING:
    from lockstep.db.interception import Interception

WRITES_OPTION = "lockstep_writes"
"""Execution option naming the tables a statement writes (every row of each may change)."""


class StatementWrites:
    """The ``do_orm_execute`` listener and legacy bulk wrappers of one interception."""

    def __init__(self, path: Interception) -> None:
        self.path = path

    def on_execute(self, state: ORMExecuteState) -> Any:
        statement = state.statement
        session = state.session
        if state.is_insert or state.is_update or state.is_delete:
            self.path.state(session).wrote = True
        if not self.path.observers:
            return None
        declared = state.execution_options.get(WRITES_OPTION)
        if declared:
            self.path.state(session).wrote = True
            for name in declared:
                self.path.emit(session, StatementWrite(str(name), "update", sql=str(statement)))
            return None
        if isinstance(statement, TextClause | TextualSelect):
            text = statement.text if isinstance(statement, TextClause) else _text_of(statement)
            for target in classify(text):
                self.path.state(session).wrote = True
                self.path.emit(session, StatementWrite(target.table, target.op, sql=text))
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
            self.path.cascade(session, table, where, None)
        name = str(table.name)
        if self.path.followed(name) is None:
            return None
        if state.is_insert:
            return self._insert(state, table)
        if state.is_update:
            return self._update(state, table)
        where = getattr(statement, "whereclause", None)
        self.path.emit(
            session, StatementWrite(name, "delete", table, where, params=state.parameters)
        )
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
            self.path.emit(state.session, StatementWrite(name, op, table, params=state.parameters))
            return None
        if _plain_rows(rows, table):
            after: list[Any] = list(rows)  # executemany of plain values keyed by column name
        else:
            mapper = _mapper_of(state)
            after = [images.plain(row, table, mapper) for row in rows]
        result = state.invoke_statement()
        self.path.emit(state.session, RowWrite(name, "insert", table, after=after))
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
            return self.by_key(state.session, [(table, rows)], state.invoke_statement)
        values = dict(statement._values or {})
        ordered = getattr(statement, "_ordered_values", None)
        if ordered:
            values.update(dict(ordered))
        if isinstance(params, dict):
            values.update(params)
        self.path.emit(
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

    def by_key(
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
            followed = self.path.followed(str(table.name))
            assert followed is not None
            pk = [c.name for c in table.primary_key.columns]
            keys = [images.key_of(row, pk) for row in rows]
            if any(k is None for k in keys):
                # Rows without their keys cannot be named: any row of the table may change.
                self.path.emit(session, StatementWrite(str(table.name), "update", table))
                continue
            named = [k for k in keys if k is not None]
            old = images.read_by_key(session, table, followed.columns, named, lock=lock)
            set_columns = changed or frozenset(c for row in rows for c in row) - set(pk)
            plans.append((table, followed, named, old, set_columns))
        result = run()
        for table, followed, named, old, set_columns in plans:
            new = images.read_by_key(session, table, followed.columns, named, lock=False)
            found = [k for k in dict.fromkeys(named) if k in old and k in new]
            self.path.emit(
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

    def wrap_legacy_bulk(self, cls: type[Session]) -> None:
        interception = self
        insert_mappings = cls.bulk_insert_mappings
        update_mappings = cls.bulk_update_mappings
        save_objects = cls.bulk_save_objects

        def bulk_insert_mappings(
            session: Session, mapper: Any, mappings: Any, *args: Any, **kwargs: Any
        ) -> None:
            interception.path.state(session).wrote = True
            mappings = list(mappings)  # read twice: by SQLAlchemy and by us
            insert_mappings(session, mapper, mappings, *args, **kwargs)
            found = _mapper(mapper)
            for table, _ in interception.path.tables(found):
                after = [images.plain(m, table, found) for m in mappings]
                interception.path.emit(
                    session, RowWrite(str(table.name), "insert", table, after=after)
                )

        def bulk_update_mappings(session: Session, mapper: Any, mappings: Any) -> None:
            interception.path.state(session).wrote = True
            mappings = list(mappings)
            found = _mapper(mapper)
            rows = [
                (table, [images.plain(m, table, found) for m in mappings])
                for table, _ in interception.path.tables(found)
            ]
            interception.by_key(session, rows, lambda: update_mappings(session, mapper, mappings))

        def bulk_save_objects(session: Session, objects: Any, *args: Any, **kwargs: Any) -> None:
            interception.path.state(session).wrote = True
            objects = list(objects)
            states = [inspect(o) for o in objects]
            new = [obj_state.key is None for obj_state in states]  # known before they run
            keyed: dict[Table, list[dict[str, Any]]] = {}
            changed: set[str] = set()
            for obj_state, is_new in zip(states, new, strict=True):
                if is_new:
                    continue
                for table, followed in interception.path.tables(obj_state.mapper):
                    image = images.object_image(obj_state, table, followed.columns)
                    keyed.setdefault(table, []).append(image)
                    changed |= images.changed_columns(obj_state, table)
            interception.by_key(
                session,
                list(keyed.items()),
                lambda: save_objects(session, objects, *args, **kwargs),
                frozenset(changed),
            )
            for obj_state, is_new in zip(states, new, strict=True):
                if not is_new:
                    continue
                for table, followed in interception.path.tables(obj_state.mapper):
                    after = [images.object_image(obj_state, table, followed.columns)]
                    interception.path.emit(
                        session, RowWrite(str(table.name), "insert", table, after=after)
                    )

        cls.bulk_insert_mappings = bulk_insert_mappings  # type: ignore[method-assign,assignment]
        cls.bulk_update_mappings = bulk_update_mappings  # type: ignore[method-assign,assignment]
        cls.bulk_save_objects = bulk_save_objects  # type: ignore[method-assign,assignment]


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
