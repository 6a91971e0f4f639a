"""Row images for the write path: what rows look like before and after a write.

* :func:`read_by_key` reads rows by primary key on the session's connection — on PostgreSQL
  ``FOR UPDATE``, so the image stays true until commit: a concurrent writer of the same row
  waits for this transaction instead of changing the row between the read and the write.
* :func:`object_image` takes a row's values from an ORM object's loaded state.
* :func:`statement_rows` turns executemany parameters and ``VALUES`` clauses into rows.
* :func:`cascades` finds what the database itself changes when rows of a table are deleted
  (``ON DELETE CASCADE / SET NULL / SET DEFAULT``, through chains), as statements selecting
  the affected child rows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, select, tuple_
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.sql.elements import BindParameter, ClauseElement, ColumnElement

from lockstep.db.writes import MISSING, Image, Operation

KEY_BATCH = 500
"""Primary keys per ``IN (...)`` read."""


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def matching(columns: Sequence[Any], keys: Sequence[tuple[Any, ...]]) -> ColumnElement[bool]:
    """``columns`` equal to one of ``keys`` (tuples, one value per column)."""
    if len(columns) == 1:
        return columns[0].in_([key[0] for key in keys])  # type: ignore[no-any-return]
    return tuple_(*columns).in_([tuple(key) for key in keys])


def read_by_key(
    session: Session,
    table: Table,
    columns: Sequence[str],
    keys: Sequence[tuple[Any, ...]],
    *,
    lock: bool,
) -> dict[tuple[Any, ...], Image]:
    """The rows of ``table`` with primary keys ``keys`` (missing rows are absent): primary
    key and ``columns``, locked ``FOR UPDATE`` when ``lock`` (PostgreSQL)."""
    pk = [c.name for c in table.primary_key.columns]
    wanted = [table.c[c] for c in dict.fromkeys([*pk, *columns])]
    found: dict[tuple[Any, ...], Image] = {}
    connection = session.connection()
    for batch in chunks(list(dict.fromkeys(keys)), KEY_BATCH):
        stmt = select(*wanted).where(matching([table.c[c] for c in pk], batch))
        if lock:
            stmt = stmt.with_for_update()
        for row in connection.execute(stmt):
            image = dict(row._mapping)
            found[tuple(image[c] for c in pk)] = image
    return found


@functools.lru_cache(maxsize=1024)
def attributes(mapper: Mapper[Any], table: Table) -> tuple[tuple[str, str], ...]:
    """(column name, attribute key) of the columns of ``table`` that ``mapper`` maps."""
    pairs = []
    for column in table.columns:
        try:
            prop = mapper.get_property_by_column(column)
        except UnmappedColumnError:
            continue  # a column this mapper leaves alone
        pairs.append((str(column.name), prop.key))
    return tuple(pairs)


def object_image(state: Any, table: Table, columns: Sequence[str]) -> dict[str, Any]:
    """``columns`` (and the primary key) of ``table`` from an ORM object's loaded values;
    MISSING for those not loaded or holding a SQL expression."""
    values = state.dict
    image: dict[str, Any] = {}
    wanted = {*columns, *(c.name for c in table.primary_key.columns)}
    for column, attr in attributes(state.mapper, table):
        if column not in wanted:
            continue
        value = values.get(attr, MISSING)
        if isinstance(value, ClauseElement):
            value = MISSING
        image[column] = value
    for column in wanted - image.keys():
        image[column] = MISSING
    return image


def history_image(state: Any, table: Table, columns: Sequence[str]) -> dict[str, Any]:
    """What an ORM object's row held before its pending changes, from attribute history
    (the values it loaded): for rows the write path could not read before the flush."""
    attrs = state.attrs
    image = object_image(state, table, columns)
    for column, attr in attributes(state.mapper, table):
        if column in image:
            history = attrs[attr].history
            if history.deleted:
                image[column] = history.deleted[0]
    return image


def changed_columns(state: Any, table: Table) -> frozenset[str]:
    """The columns of ``table`` an ORM object's pending changes set."""
    attrs = state.attrs
    return frozenset(
        column
        for column, attr in attributes(state.mapper, table)
        if attrs[attr].history.has_changes()
    )


def key_of(image: Mapping[str, Any], pk: Sequence[str]) -> tuple[Any, ...] | None:
    values = tuple(image.get(c, MISSING) for c in pk)
    return None if any(v is MISSING or v is None for v in values) else values


def plain(
    row: Mapping[Any, Any], table: Table, mapper: Mapper[Any] | None = None
) -> dict[str, Any]:
    """A statement's row keyed by column name: bound parameters unwrapped, SQL expressions
    kept as they are (the database computes them)."""
    names = _names(table, mapper)
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = names.get(getattr(key, "key", key))
        if name is None:
            column_name = getattr(key, "name", None)
            name = column_name if isinstance(column_name, str) and column_name in table.c else None
        if name is None:
            continue
        out[name] = value.value if isinstance(value, BindParameter) else value
    return out


@functools.lru_cache(maxsize=1024)
def _name_map(table: Table, mapper: Mapper[Any] | None) -> tuple[tuple[str, str], ...]:
    pairs = [(str(c.key), str(c.name)) for c in table.columns]
    pairs += [(str(c.name), str(c.name)) for c in table.columns]
    if mapper is not None:
        pairs += [(attr, column) for column, attr in attributes(mapper, table)]
    return tuple(pairs)


def _names(table: Table, mapper: Mapper[Any] | None) -> dict[str, str]:
    return dict(_name_map(table, mapper))


def statement_rows(statement: Any, parameters: Any) -> list[Mapping[Any, Any]] | None:
    """The rows an INSERT writes (executemany parameters, or its ``VALUES``), keyed by
    whatever the statement used (columns, attribute or column names); None when the
    statement's rows cannot be known from it."""
    if isinstance(parameters, list | tuple) and parameters:
        if not all(isinstance(p, Mapping) for p in parameters):
            return None
        return list(parameters)
    multi = getattr(statement, "_multi_values", None)
    if multi:
        rows: list[Mapping[Any, Any]] = []
        for group in multi:
            for row in group:
                if not isinstance(row, Mapping):
                    return None  # positional VALUES
                rows.append(row)
        return rows
    values = getattr(statement, "_values", None)
    single: dict[Any, Any] = dict(values) if values else {}
    if isinstance(parameters, Mapping):
        single.update(parameters)
    return [single] if single else None


@dataclass(frozen=True, slots=True)
class Cascade:
    """Deleting rows of a parent makes the database change rows of ``child``: those
    ``where`` selects; ``op`` delete (CASCADE) or update (SET NULL / SET DEFAULT, of
    ``column``); ``known`` the column values every such row has, when the parents are named
    by single-column keys."""

    child: Table
    op: Operation
    where: ColumnElement[bool]
    column: str
    known: Mapping[str, frozenset[Any]] = field(default_factory=dict)


def cascades(
    parent: Table,
    parent_filter: ColumnElement[bool] | None,
    keys: Sequence[tuple[Any, ...]] | None = None,
) -> list[Cascade]:
    """What deleting the rows of ``parent`` selected by ``parent_filter`` (or named by
    primary ``keys``) makes the database change, through chains of CASCADE."""
    found: list[Cascade] = []
    _visit(parent, parent_filter, keys, found, {parent.name})
    return found


def _visit(
    parent: Table,
    parent_filter: ColumnElement[bool] | None,
    keys: Sequence[tuple[Any, ...]] | None,
    found: list[Cascade],
    seen: set[str],
) -> None:
    for child, fk in _children(parent):
        action = (fk.ondelete or "").upper()
        column, referenced = fk.parent, fk.column
        known: dict[str, frozenset[Any]] = {}
        pk = list(parent.primary_key.columns)
        if keys is not None and len(pk) == 1 and referenced is pk[0]:
            where: ColumnElement[bool] = column.in_([k[0] for k in keys])
            known[str(column.name)] = frozenset(k[0] for k in keys)
        else:
            selected = select(referenced)
            if parent_filter is not None:
                selected = selected.where(parent_filter)
            elif keys is not None:
                selected = selected.where(matching(pk, keys))
            where = column.in_(selected)
        op: Operation = "delete" if action == "CASCADE" else "update"
        found.append(Cascade(child, op, where, str(column.name), known))
        if action == "CASCADE" and child.name not in seen:
            _visit(child, where, None, found, seen | {child.name})


@functools.lru_cache(maxsize=1024)
def _children(parent: Table) -> tuple[tuple[Table, Any], ...]:
    """(child table, foreign key) pairs whose key the database changes on a parent delete."""
    out = []
    for child in parent.metadata.tables.values():
        for fk in child.foreign_keys:
            action = (fk.ondelete or "").upper()
            if action in ("CASCADE", "SET NULL", "SET DEFAULT") and fk.column.table is parent:
                out.append((child, fk))
    return tuple(out)
