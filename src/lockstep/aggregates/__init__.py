"""Dashboard rollups maintained in the writer's transaction, and proven equal to a GROUP BY.

Declare a :class:`Rollup` (group keys, measures, optional filter), create its table with a
frozen migration (:func:`rollup_migration`; ``lockstep migration rollup`` writes the file),
and :meth:`Aggregates.install` it on the database:
every ``writer()`` transaction then adds its deltas (one upsert per touched group, in one
lock order) before it commits. ``verify`` / ``repair`` / ``rebuild`` check and fix a rollup
against its source. See ``docs/aggregates.md``.
"""

from lockstep.aggregates.delta import GroupDelta, settle
from lockstep.aggregates.keys import ColumnKey, Key, MonthKey, YearKey, month, year
from lockstep.aggregates.measures import Avg, Count, Max, Measure, Min, Sum
from lockstep.aggregates.migration import (
    RollupMigration,
    create_rollups,
    drop_rollups,
    rollup_migration,
)
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
    "RollupMigration",
    "Sum",
    "Verification",
    "YearKey",
    "create_rollups",
    "drop_rollups",
    "month",
    "rebuild",
    "repair",
    "rollup_migration",
    "settle",
    "verify",
    "year",
]
