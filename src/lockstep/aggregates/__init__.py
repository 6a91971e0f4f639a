"""Dashboard rollups maintained in the writer's transaction, and proven equal to a GROUP BY.

Declare a :class:`Rollup` (group keys, measures, optional filter), create its table with
:func:`create_rollups` from a migration, and :meth:`Aggregates.install` it on the database:
every ``writer()`` transaction then adds its deltas (one upsert per touched group, in one
lock order) before it commits. ``verify`` / ``repair`` / ``rebuild`` check and fix a rollup
against its source. See ``docs/aggregates.md``.
"""

from lockstep.aggregates.delta import GroupDelta, settle
from lockstep.aggregates.keys import ColumnKey, Key, MonthKey, YearKey, month, year
from lockstep.aggregates.measures import Avg, Count, Max, Measure, Min, Sum
from lockstep.aggregates.migration import create_rollups, drop_rollups
from lockstep.aggregates.registry import Aggregates
from lockstep.aggregates.rollup import ROW_COUNT, Rollup
from lockstep.aggregates.verification import (
    Discrepancy,
    Progress,
    Rewrite,
    Verification,
    rebuild,
    repair,
    verify,
)

__all__ = [
    "ROW_COUNT",
    "Aggregates",
    "Avg",
    "ColumnKey",
    "Count",
    "Discrepancy",
    "GroupDelta",
    "Key",
    "Max",
    "Measure",
    "Min",
    "MonthKey",
    "Progress",
    "Rewrite",
    "Rollup",
    "Sum",
    "Verification",
    "YearKey",
    "create_rollups",
    "drop_rollups",
    "month",
    "rebuild",
    "repair",
    "settle",
    "verify",
    "year",
]
