"""The tables rollups are computed from, and reading their rows from every write path.

A :class:`Source` knows which columns its rollups need and how statement parameters and ORM
attributes name them; the functions here turn ORM objects, executemany parameters and
``VALUES`` clauses into plain rows (column name -> value), read rows by primary key, and find
the groups a WHERE clause (or a cascading parent delete) touches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, inspect, select, tuple_
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.sql.elements import BindParameter, ClauseElement, ColumnElement

from lockstep.aggregates.rollup import Rollup
from lockstep.aggregates.store import Group, chunks, group_of_row
from lockstep.exceptions import AggregateError

Row = dict[str, Any]

_MISSING = object()
PK_BATCH = 500


@dataclass(slots=True)
class Source:
    """A table some rollups are computed from, and how to read its rows."""

    table: Table
    rollups: list[Rollup]
    needed: tuple[str, ...]
    pk: tuple[str, ...]
    attr_of: dict[Mapper[Any], dict[str, str]] = field(default_factory=dict)
    column_of: dict[str, str] = field(default_factory=dict)
    """statement parameter name (attribute key or column key) -> column name"""


@dataclass(frozen=True, slots=True)
class Cascade:
    """Deleting rows of ``parent`` makes the database change rows of ``source``: the rows
    ``where(parent_filter)`` selects."""

    source: Source
    parent: Table
    where: Callable[[ColumnElement[bool]], ColumnElement[bool]]


def state_of(obj: Any) -> Any:
    return inspect(obj)


def mapper_of(entity: Any) -> Mapper[Any]:
    found: Any = inspect(entity)
    return found if isinstance(found, Mapper) else found.mapper


def key_of(source: Source, mapping: Mapping[Any, Any]) -> tuple[Any, ...]:
    named = {column_name(source, k): v for k, v in mapping.items()}
    try:
        return tuple(named[c] for c in source.pk)
    except KeyError:
        raise AggregateError(
            f"bulk update of {source.table.name!r} without primary keys in every row"
        ) from None


def deleted_states(session: Session, context: Any) -> list[Any]:
    """Objects this flush deleted: the session's, plus those the unit of work added by ORM
    cascades (``delete`` cascades on relationships not loaded before the flush)."""
    states = {id(s): s for s in (state_of(obj) for obj in session.deleted)}
    for state, (is_delete, list_only) in getattr(context, "states", {}).items():
        if is_delete and not list_only:
            states.setdefault(id(state), state)
    return list(states.values())


def row_of(state: Any, source: Source) -> Row | None:
    attrs = source.attr_of[state.mapper]
    values = state.dict
    row: Row = {}
    for column in source.needed:
        value = values.get(attrs[column], _MISSING)
        if value is _MISSING:
            return None
        row[column] = value
    return row


def matching(columns: Sequence[Any], keys: Sequence[Any]) -> ColumnElement[bool]:
    condition: ColumnElement[bool]
    if len(columns) == 1:
        condition = columns[0].in_([k[0] if isinstance(k, tuple) else k for k in keys])
    else:
        condition = tuple_(*columns).in_([tuple(k) for k in keys])
    return condition


def rows_by_key(
    session: Session, source: Source, keys: Sequence[tuple[Any, ...]]
) -> Iterable[tuple[tuple[Any, ...], Row]]:
    """The current rows (needed columns) of ``keys``, read on the session's connection."""
    t = source.table
    pk = [t.c[c] for c in source.pk]
    columns = [t.c[c] for c in dict.fromkeys([*source.pk, *source.needed])]
    connection = session.connection()
    for batch in chunks(list(dict.fromkeys(keys)), PK_BATCH):
        for row in connection.execute(select(*columns).where(matching(pk, batch))):
            mapping = row._mapping
            yield tuple(mapping[c] for c in source.pk), {c: mapping[c] for c in source.needed}


def groups_where(
    session: Session, rollup: Rollup, where: ColumnElement[bool], params: Any = None
) -> set[Group]:
    """The groups of the source rows ``where`` selects (with the statement's parameters:
    one pre-read per parameter set of an executemany)."""
    stmt = rollup.distinct_groups(where)
    connection = session.connection()
    sets = params if isinstance(params, list | tuple) and params else [params or {}]
    found: set[Group] = set()
    for one in sets:
        bound = {k: v for k, v in dict(one).items() if isinstance(k, str)}
        found |= {group_of_row(rollup, r) for r in connection.execute(stmt, bound)}
    return found


def moved_groups(rollup: Rollup, before: set[Group], written: Mapping[str, Any]) -> set[Group]:
    """Where an UPDATE that sets key columns to constants moves the rows of ``before``."""
    constants: dict[str, Any] = {}
    for key in rollup.keys:
        if key.source not in written:
            continue
        value = written[key.source]
        if isinstance(value, BindParameter):
            value = value.value
        elif isinstance(value, ClauseElement):
            raise AggregateError(
                f"update() sets {rollup.source.name}.{key.source}, a group key of rollup "
                f"{rollup.name!r}, to a SQL expression: the rows' new groups are unknown. Set "
                "it to a value, or update the rows by primary key or as ORM objects"
            )
        constants[key.name] = key.python(value)
    return {
        tuple(constants.get(k.name, value) for k, value in zip(rollup.keys, group, strict=True))
        for group in before
    }


def column_name(source: Source, key: Any) -> str | None:
    name = getattr(key, "key", key)
    if isinstance(name, str):
        if name in source.column_of:
            return source.column_of[name]
        for attrs in source.attr_of.values():
            for column, attr in attrs.items():
                if attr == name:
                    return column
    column_name = getattr(key, "name", None)
    return column_name if isinstance(column_name, str) and column_name in source.table.c else None


def statement_rows(statement: Any, parameters: Any) -> tuple[list[Any], bool]:
    """The rows an INSERT writes (its executemany parameters or its VALUES), and whether they
    are plain values (executemany) rather than possibly SQL elements."""
    if isinstance(parameters, list | tuple) and parameters:
        return list(parameters), True
    multi = getattr(statement, "_multi_values", None)
    if multi:
        return [row for group in multi for row in group], False
    values = getattr(statement, "_values", None)
    rows: list[Any] = []
    if values:
        rows.append(dict(values))
    if isinstance(parameters, Mapping) and parameters:
        if rows:
            rows[0].update(parameters)
        else:
            rows.append(dict(parameters))
    return rows, False


def complete(source: Source, rollup: Rollup, row: Any) -> Row:
    """``row`` keyed by column name with plain values; scalar column defaults filled in."""
    if not isinstance(row, Mapping):
        raise AggregateError(
            f"insert into {source.table.name!r} with positional values: rollup {rollup.name!r} "
            "needs the rows as mappings of column names"
        )
    out: Row = {}
    for key, value in row.items():
        name = column_name(source, key)
        if name is None:
            continue
        if isinstance(value, BindParameter):
            value = value.value
        elif isinstance(value, ClauseElement):
            if name in rollup.needed:
                raise AggregateError(
                    f"insert into {source.table.name!r} sets {name} to a SQL expression, which "
                    f"rollup {rollup.name!r} needs as a value; pass the value itself"
                )
            continue
        out[name] = value
    for name in rollup.needed:
        if name in out:
            continue
        default = source.table.c[name].default
        if default is not None and getattr(default, "is_scalar", False):
            out[name] = getattr(default, "arg", None)
        else:
            raise AggregateError(
                f"insert into {source.table.name!r} without a value for {name!r}, which "
                f"rollup {rollup.name!r} needs and which is computed by a default; pass it "
                "explicitly"
            )
    return out


def cascades_into(source: Source) -> list[Cascade]:
    """Every table whose deletes the database propagates into ``source`` (ON DELETE CASCADE,
    or SET NULL / SET DEFAULT on a column a rollup reads), directly or through a chain."""
    found: list[Cascade] = []
    tables = list(source.table.metadata.tables.values())

    def visit(
        child: Table, to_child: Callable[[ColumnElement[bool]], ColumnElement[bool]], seen: set[str]
    ) -> None:
        for fk in child.foreign_keys:
            action = (fk.ondelete or "").upper()
            relevant = action == "CASCADE" or (
                action in ("SET NULL", "SET DEFAULT")
                and child is source.table
                and fk.parent.name in source.needed
            )
            parent = fk.column.table
            if not relevant or not isinstance(parent, Table) or parent.name in seen:
                continue
            column, referenced = fk.parent, fk.column

            def where(
                parent_filter: ColumnElement[bool],
                column: Any = column,
                referenced: Any = referenced,
                to_child: Callable[[ColumnElement[bool]], ColumnElement[bool]] = to_child,
            ) -> ColumnElement[bool]:
                return to_child(column.in_(select(referenced).where(parent_filter)))

            found.append(Cascade(source, parent, where))
            if action == "CASCADE":
                visit(parent, where, seen | {parent.name})

    visit(source.table, lambda condition: condition, {source.table.name})
    del tables
    return found
