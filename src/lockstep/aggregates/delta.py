"""The arithmetic of incremental maintenance: per-group deltas and how they settle.

Pure values and functions, no I/O. A transaction's effect on one group is a
:class:`GroupDelta`: rows added minus rows removed, the change of each sum, and for each
MIN/MAX the best value added and the best value removed, each with how many rows held it.
Deltas of one group combine by addition, in any order.

Why MIN/MAX stay exact without rereading the group: let S be the group's stored rows, I the
rows the transaction added and R those it removed (R is within S plus I). The new extreme is
at least ``m = best(S + I)``, which the upsert computes from the stored (value, count) and
the added (value, count). If the best removed value equals ``m``, its count drops by the
removed count; when that reaches zero (or the data contradicts itself) the group is
recomputed from the source table. Otherwise ``m`` stands with its count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lockstep.aggregates.measures import ExtremeSlot
from lockstep.types import canonical

Extreme = tuple[Any, int]
"""A value and how many rows hold it."""


def merge_extreme(a: Extreme | None, b: Extreme | None, *, is_max: bool) -> Extreme | None:
    """The best of two (value, count) pairs; counts add up on a tie."""
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0]:
        return (a[0], a[1] + b[1])
    better = b[0] > a[0] if is_max else b[0] < a[0]
    return b if better else a


class GroupDelta:
    """What one transaction did to one group (``key`` holds the values to store)."""

    __slots__ = ("added", "key", "removed", "rows", "sums")

    def __init__(self, key: tuple[Any, ...], n_sums: int, n_extremes: int) -> None:
        self.key = key
        self.rows = 0
        self.sums = [0] * n_sums
        self.added: list[Extreme | None] = [None] * n_extremes
        self.removed: list[Extreme | None] = [None] * n_extremes

    @property
    def empty(self) -> bool:
        """Nothing to write: no rows, sums or extremes moved."""
        return (
            self.rows == 0
            and not any(self.sums)
            and all(a is None for a in self.added)
            and all(r is None for r in self.removed)
        )

    def merge(self, other: GroupDelta, extremes: Sequence[ExtremeSlot]) -> None:
        self.rows += other.rows
        for i, value in enumerate(other.sums):
            self.sums[i] += value
        for i, slot in enumerate(extremes):
            self.added[i] = merge_extreme(self.added[i], other.added[i], is_max=slot.is_max)
            self.removed[i] = merge_extreme(self.removed[i], other.removed[i], is_max=slot.is_max)

    def __repr__(self) -> str:
        return (
            f"GroupDelta({self.key!r}, rows={self.rows}, sums={self.sums}, "
            f"added={self.added}, removed={self.removed})"
        )


Deltas = dict[tuple[Any, ...], GroupDelta]


def merge_into(target: Deltas, source: Deltas, extremes: Sequence[ExtremeSlot]) -> None:
    """Add every group delta of ``source`` to ``target``."""
    for group, delta in source.items():
        found = target.get(group)
        if found is None:
            copy = GroupDelta(delta.key, len(delta.sums), len(extremes))
            copy.merge(delta, extremes)
            target[group] = copy
        else:
            found.merge(delta, extremes)


def sort_key(group: tuple[Any, ...]) -> tuple[str, ...]:
    """The order every writer locks groups in: one total order shared by all processes."""
    return tuple(canonical(value) for value in group)


@dataclass(frozen=True, slots=True)
class Settled:
    """What a group needs after its upsert: nothing, new extreme counts, deletion (empty) or a
    recompute from the source table."""

    action: Literal["keep", "delete", "recompute"]
    counts: Mapping[str, int] = field(default_factory=dict)


KEEP = Settled("keep")


def settle(
    stored: Mapping[str, Any], delta: GroupDelta, extremes: Sequence[ExtremeSlot]
) -> Settled:
    """Decide from the upserted row ``stored`` (row_count and extremes, removals not yet
    applied) what else the group needs."""
    rows = stored["row_count"]
    if rows < 0:
        return Settled("recompute")  # the rollup had drifted: never store a negative count
    if rows == 0:
        return Settled("delete")
    counts: dict[str, int] = {}
    for slot, removed in zip(extremes, delta.removed, strict=True):
        if removed is None:
            continue
        value, n = removed
        current = stored[slot.column]
        if current is None:
            return Settled("recompute")
        beyond = value > current if slot.is_max else value < current
        if beyond:
            return Settled("recompute")  # removed a row better than the extreme: drifted
        if value == current:
            left = int(stored[slot.count_column]) - n
            if left <= 0:
                return Settled("recompute")
            counts[slot.count_column] = left
    return Settled("keep", counts) if counts else KEEP
