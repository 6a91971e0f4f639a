"""What a cached value depends on, and which version stamps a committed change bumps.

Pure functions over values, no I/O. A dependency expands to a few stamp keys; a change
bumps a few stamp keys; a cached value is valid while the stamps it was computed under are
unchanged. The keys::

    g                  everything (SQL lockstep could not attribute to a table)
    t:{table}          any change to the table
    a:{table}          rows changed that cannot be named by key or scope
    k:{table}          rows changed whose keys are unknown (key-less inserts, huge batches)
    r:{table}:{key}    one row
    s:{table}:{col}={value}   rows whose scope column had that value (before or after)

    Table(T)            -> g, t:T
    Row(T, key)         -> g, a:T, k:T, r:T:key
    Scope(T, col=value) -> g, a:T, s:T:col=value
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lockstep.changes import Tracking
from lockstep.exceptions import ConfigurationError
from lockstep.types import ALL_TABLES, ChangeSet, canonical

GLOBAL = "g"
_SEP = "\x1f"  # joins composite keys; cannot appear in a canonical value by accident

# A change set naming more rows than this in one table bumps k:{table} instead of each row:
# bookkeeping stays bounded for bulk imports, at the price of missing every row-keyed entry.
MAX_ROW_BUMPS_PER_TABLE = 2_000


@dataclass(frozen=True, slots=True)
class Table:
    """Depends on every row of ``name`` (use for lists, counts, joins and ranges)."""

    name: str

    def stamp_keys(self) -> tuple[str, ...]:
        return (GLOBAL, f"t:{self.name}")


@dataclass(frozen=True, slots=True)
class Row:
    """Depends on one row of ``table`` by primary key (also if the row does not exist yet)."""

    table: str
    key: tuple[str, ...]

    def __init__(self, table: str, *key: Any) -> None:
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "key", tuple(canonical(k) for k in key))

    def stamp_keys(self) -> tuple[str, ...]:
        t = self.table
        return (GLOBAL, f"a:{t}", f"k:{t}", f"r:{t}:{_SEP.join(self.key)}")


@dataclass(frozen=True, slots=True)
class Scope:
    """Depends on the rows of ``table`` whose ``column`` equals ``value`` (``case_id=7``)."""

    table: str
    column: str
    value: str

    def __init__(self, table: str, **column_value: Any) -> None:
        if len(column_value) != 1:
            raise ConfigurationError("Scope takes exactly one column=value")
        ((column, value),) = column_value.items()
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "value", canonical(value))

    def stamp_keys(self) -> tuple[str, ...]:
        t = self.table
        return (GLOBAL, f"a:{t}", f"s:{t}:{self.column}={self.value}")


Dependency = Table | Row | Scope


def stamp_keys(dependencies: Iterable[Dependency]) -> tuple[str, ...]:
    """The distinct stamp keys of ``dependencies``, in a stable order."""
    return _stamp_keys(tuple(dependencies))


@functools.lru_cache(maxsize=65_536)
def _stamp_keys(dependencies: tuple[Dependency, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k for dep in dependencies for k in dep.stamp_keys()))


def check_dependencies(dependencies: Iterable[Dependency], tracking: Tracking) -> None:
    """Refuse a dependency the change feed could never invalidate (a silent stale cache)."""
    for dep in dependencies:
        name = dep.name if isinstance(dep, Table) else dep.table
        spec = tracking.spec(name)
        if spec is None:
            raise ConfigurationError(
                f"cache dependency on {name!r}, which the change feed does not track"
            )
        if isinstance(dep, Scope) and dep.column not in spec.scope_columns:
            raise ConfigurationError(
                f"cache dependency on {name}.{dep.column}, which is not a scope column "
                f"(declared: {', '.join(spec.scope_columns) or 'none'}); add it to Tracking"
            )
        if isinstance(dep, Row) and len(dep.key) != len(spec.key_columns):
            raise ConfigurationError(
                f"Row({name!r}) needs {len(spec.key_columns)} key value(s), got {len(dep.key)}"
            )


def bumps(changeset: ChangeSet) -> frozenset[str]:
    """The stamp keys ``changeset`` invalidates."""
    keys: set[str] = set()
    rows_by_table: dict[str, set[str]] = {}
    for change in changeset.changes:
        t = change.table
        if t == ALL_TABLES:
            keys.add(GLOBAL)
            continue
        keys.add(f"t:{t}")
        if change.key is None:
            if change.op == "insert" and change.scopes_complete:
                keys.add(f"k:{t}")
            else:
                keys.add(f"a:{t}")
                continue
        else:
            rows_by_table.setdefault(t, set()).add(_SEP.join(change.key))
            if not change.scopes_complete:
                keys.add(f"a:{t}")
        for column, values in change.scopes.items():
            keys.update(f"s:{t}:{column}={value}" for value in values)
    for t, rows in rows_by_table.items():
        if len(rows) > MAX_ROW_BUMPS_PER_TABLE:
            keys.add(f"k:{t}")
        else:
            keys.update(f"r:{t}:{row}" for row in rows)
    return frozenset(keys)
