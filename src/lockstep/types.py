"""Shared vocabulary used across lockstep's layers: changes, change sets and dependencies."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Backend = Literal["sqlite", "postgresql"]
"""The two database kinds lockstep runs on."""

HealthStatus = Literal["ok", "fail"]

Operation = Literal["insert", "update", "delete"]


def canonical(value: Any) -> str:
    """The one string form of a key or scope value, shared by writers and readers.

    ``7``, ``"7"`` and ``Decimal("7")`` all stand for the same scope on purpose: a dependency
    declared with the wrong Python type must still be invalidated.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str | uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "value"):  # enum members
        return canonical(value.value)
    raise TypeError(f"cannot use a {type(value).__name__} as a key or scope value")


@dataclass(frozen=True, slots=True)
class Change:
    """What one write did to one table.

    ``key`` is the primary key (canonical strings) when the row is known, ``None`` when a bulk
    statement touched rows lockstep cannot name. ``scopes`` maps a declared scope column to
    every value the change touched (old and new, so a row moving from case 7 to case 8
    touches both). ``scopes_complete`` says whether every declared scope column is present,
    which lets a key-less insert stay narrow.
    """

    table: str
    op: Operation
    key: tuple[str, ...] | None = None
    scopes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    columns: frozenset[str] | None = None
    scopes_complete: bool = True

    def to_json(self) -> list[Any]:
        return [
            str(self.table),
            self.op,
            list(self.key) if self.key is not None else None,
            # str(): SQLAlchemy names are str subclasses, which orjson refuses as keys.
            {str(col): sorted(values) for col, values in self.scopes.items()},
            sorted(self.columns) if self.columns is not None else None,
            self.scopes_complete,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> Change:
        table, op, key, scopes, columns, complete = data
        return cls(
            table=table,
            op=op,
            key=tuple(key) if key is not None else None,
            scopes={col: frozenset(values) for col, values in scopes.items()},
            columns=frozenset(columns) if columns is not None else None,
            scopes_complete=complete,
        )


ALL_TABLES = "*"
"""The table name of a change lockstep could not attribute (raw SQL it could not parse)."""


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Everything one committed transaction changed, in the order it was flushed.

    ``id`` is the change-log position (increasing; on SQLite also the commit order) and is
    the read-your-writes token a write hands back to its client. ``txid`` is the database
    transaction id on PostgreSQL (``pg_current_xact_id()``), the same as ``id`` on SQLite.
    """

    id: int
    txid: int
    changes: tuple[Change, ...]

    @property
    def tables(self) -> frozenset[str]:
        return frozenset(change.table for change in self.changes)
