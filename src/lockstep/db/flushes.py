"""ORM flushes as write events: what a flush inserts, updates and deletes, with row images.

Part of the write path (:mod:`lockstep.db.interception`): before a flush, the rows it will
update or delete are read by key (``FOR UPDATE`` on PostgreSQL, so the images cannot go stale
before the flush's own statements) and what the database will cascade is announced; after
it, each table's inserts, updates and deletes become one :class:`~lockstep.db.writes.RowWrite`
each, and many-to-many collection changes a ``RowWrite`` (or ``StatementWrite``) of their
association table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, inspect
from sqlalchemy.orm import Session

from lockstep.db import images
from lockstep.db.writes import MISSING, Image, Operation, RowWrite, StatementWrite, Write

if TYPE_CHECKING:
    from lockstep.db.interception import Interception


class FlushWrites:
    """The flush listeners of one :class:`~lockstep.db.interception.Interception`."""

    def __init__(self, path: Interception) -> None:
        self.path = path

    def before_flush(self, session: Session, _context: Any, _instances: Any) -> None:
        state = self.path.state(session)
        if session.new or session.deleted or session.dirty:
            state.wrote = True
        if not self.path.observers:
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
            followed = self.path.followed(str(table.name))
            assert followed is not None
            for key, image in images.read_by_key(
                session, table, followed.columns, keys, lock=lock
            ).items():
                state.before[(str(table.name), key)] = image
        for table, keys in doomed.items():
            self.path.cascade(session, table, None, keys)

    def _want(self, obj_state: Any, wanted: dict[Table, list[tuple[Any, ...]]]) -> None:
        if obj_state.key is None:
            return
        for table, _ in self.path.tables(obj_state.mapper):
            wanted.setdefault(table, []).append(tuple(obj_state.key[1]))

    def after_flush(self, session: Session, context: Any) -> None:
        if not self.path.observers:
            return
        state = self.path.state(session)
        before = state.before
        state.before = {}
        writes: dict[tuple[Table, Operation], _Rows] = {}
        for obj in session.new:
            obj_state = inspect(obj)
            for table, followed in self.path.tables(obj_state.mapper):
                rows = writes.setdefault((table, "insert"), _Rows())
                rows.after.append(images.object_image(obj_state, table, followed.columns))
        for obj in session.dirty:
            if not session.is_modified(obj, include_collections=False):
                continue
            obj_state = inspect(obj)
            for table, followed in self.path.tables(obj_state.mapper):
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
            for table, followed in self.path.tables(obj_state.mapper):
                old = None
                if obj_state.key is not None:
                    old = before.get((str(table.name), tuple(obj_state.key[1])))
                if old is None:
                    old = images.object_image(obj_state, table, followed.columns)
                writes.setdefault((table, "delete"), _Rows()).before.append(old)
        self._reread_missing(session, writes)
        for (table, op), rows in writes.items():
            self.path.emit(
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
            self.path.emit(session, write)

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
            followed = self.path.followed(str(table.name))
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
                if self.path.followed(name) is None:
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


@dataclass(slots=True)
class _Rows:
    before: list[Image] = field(default_factory=list)
    after: list[Image] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)


def _deleted_states(session: Session, context: Any) -> list[Any]:
    """Objects this flush deleted: the session's, plus those the unit of work added by ORM
    cascades (``delete`` cascades on relationships not loaded before the flush)."""
    states = {id(s): s for s in (inspect(obj) for obj in session.deleted)}
    for state, (is_delete, list_only) in getattr(context, "states", {}).items():
        if is_delete and not list_only:
            states.setdefault(id(state), state)
    return list(states.values())
