"""Which tables the change feed captures, their keys, scope columns and cascading children."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import MetaData, Table

from lockstep.changes.log import metadata as log_metadata
from lockstep.exceptions import ConfigurationError
from lockstep.schema import meta_table


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One tracked table: how its rows are named and which columns scope them."""

    name: str
    key_columns: tuple[str, ...]
    scope_columns: tuple[str, ...]
    cascades: tuple[tuple[str, str], ...]
    """(child table, foreign-key column) pairs the database changes when a row is deleted."""


class Tracking:
    """The tables of ``metadata`` whose writes are captured.

    ``scopes`` names scope columns shared across tables (e.g. ``organization_id``); each table
    uses those it has, plus its own from ``per_table``. A table in ``exclude`` is not captured
    (its caches, if any, will not be invalidated: use it for write-only logs).
    """

    def __init__(
        self,
        metadata: MetaData,
        *,
        scopes: Iterable[str] = (),
        per_table: Mapping[str, Iterable[str]] | None = None,
        exclude: Iterable[str] = (),
    ) -> None:
        excluded = set(exclude) | set(log_metadata.tables) | {meta_table.name}
        shared = tuple(scopes)
        per_table = dict(per_table or {})
        unknown = set(per_table) - set(metadata.tables)
        if unknown:
            raise ConfigurationError(f"per_table names unknown tables: {sorted(unknown)}")
        self._specs: dict[str, TableSpec] = {}
        tables = [t for t in metadata.sorted_tables if t.name not in excluded]
        for table in tables:
            own = tuple(per_table.get(table.name, ()))
            missing = [c for c in own if c not in table.c]
            if missing:
                raise ConfigurationError(f"table {table.name!r} has no column(s) {missing}")
            scope_cols = tuple(dict.fromkeys([c for c in shared if c in table.c] + list(own)))
            self._specs[str(table.name)] = TableSpec(
                name=str(table.name),
                key_columns=tuple(str(c.name) for c in table.primary_key.columns),
                scope_columns=scope_cols,
                cascades=_cascading_children(table, tables),
            )

    def spec(self, table: str) -> TableSpec | None:
        return self._specs.get(table)

    @property
    def tables(self) -> frozenset[str]:
        return frozenset(self._specs)


def _cascading_children(parent: Table, tables: list[Table]) -> tuple[tuple[str, str], ...]:
    found = []
    for child in tables:
        for fk in child.foreign_keys:
            ondelete = (fk.ondelete or "").upper()
            if fk.column.table is parent and ondelete in ("CASCADE", "SET NULL", "SET DEFAULT"):
                found.append((str(child.name), str(fk.parent.name)))
    return tuple(found)
