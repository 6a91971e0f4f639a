"""What a rollup measures per group: count, sum, average, minimum and maximum.

Every rollup row also stores ``row_count`` (the group's COUNT(*)): it says when a group is
empty (the row is deleted) and is the denominator of every average. Storage per measure:

* ``Count(name)``        nothing more (reads ``row_count``)
* ``Sum(col, name)``     ``name``: the exact integer sum
* ``Avg(col, name)``     ``name_sum``: read as ``name_sum / row_count``
* ``Min(col, name)``     ``name`` and ``name_n``: the extreme and how many rows hold it, so a
  deleted row that held the minimum only costs a recompute of its group when it was the last
  one at that value.
* ``Max(col, name)``     the same, for the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["count", "sum", "avg", "min", "max"]


@dataclass(frozen=True, slots=True)
class Measure:
    """Base of the measures; build them with :class:`Count`, :class:`Sum`, ..."""

    kind: Kind
    source: str | None
    name: str

    @property
    def storage(self) -> tuple[str, ...]:
        """The rollup columns this measure keeps (besides ``row_count``)."""
        if self.kind == "sum":
            return (self.name,)
        if self.kind == "avg":
            return (f"{self.name}_sum",)
        if self.kind in ("min", "max"):
            return (self.name, f"{self.name}_n")
        return ()


def Count(name: str = "count") -> Measure:
    """The number of rows in the group."""
    return Measure("count", None, name)


def Sum(column: str, name: str | None = None) -> Measure:
    """The exact sum of an integer column (store money as integer cents)."""
    return Measure("sum", column, name or f"{column}_sum")


def Avg(column: str, name: str | None = None) -> Measure:
    """The mean of an integer column: its sum over the group's row count."""
    return Measure("avg", column, name or f"{column}_avg")


def Min(column: str, name: str | None = None) -> Measure:
    """The smallest value of an orderable column (number, date, string)."""
    return Measure("min", column, name or f"{column}_min")


def Max(column: str, name: str | None = None) -> Measure:
    """The largest value of an orderable column (number, date, string)."""
    return Measure("max", column, name or f"{column}_max")


@dataclass(frozen=True, slots=True)
class SumSlot:
    """One stored sum: rollup column ``column`` adds up source column ``source``."""

    column: str
    source: str


@dataclass(frozen=True, slots=True)
class ExtremeSlot:
    """One stored extreme: ``column`` holds the min (or max) of ``source``, ``count_column``
    how many rows of the group hold it."""

    column: str
    count_column: str
    source: str
    is_max: bool


def slots(measures: tuple[Measure, ...]) -> tuple[tuple[SumSlot, ...], tuple[ExtremeSlot, ...]]:
    """The stored sums and extremes of ``measures``, in declaration order."""
    sums: list[SumSlot] = []
    extremes: list[ExtremeSlot] = []
    for m in measures:
        if m.kind in ("sum", "avg"):
            assert m.source is not None
            sums.append(SumSlot(m.storage[0], m.source))
        elif m.kind in ("min", "max"):
            assert m.source is not None
            extremes.append(ExtremeSlot(m.storage[0], m.storage[1], m.source, m.kind == "max"))
    return tuple(sums), tuple(extremes)
