"""The tables rollups are computed from: which columns they need, the groups a WHERE
clause touches, where an UPDATE moves rows, and the defaults an insert leaves out.

Row images themselves come from lockstep's write path (:mod:`lockstep.db.images`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter, ClauseElement, ColumnElement

from lockstep.aggregates.rollup import Rollup
from lockstep.aggregates.store import Group, group_of_row
from lockstep.exceptions import AggregateError

Row = dict[str, Any]


@dataclass(slots=True)
class Source:
    """A table some rollups are computed from, and how to read its rows."""

    table: Table
    rollups: list[Rollup]
    needed: tuple[str, ...]
    pk: tuple[str, ...]
    column_of: dict[str, str] = field(default_factory=dict)
    """statement parameter name (attribute key or column key) -> column name"""


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
    if isinstance(name, str) and name in source.column_of:
        return source.column_of[name]
    column_name = getattr(key, "name", None)
    return column_name if isinstance(column_name, str) and column_name in source.table.c else None


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
