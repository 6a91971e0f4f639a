"""Creating rollup tables from an application's Alembic migration.

    def upgrade() -> None:
        create_rollups(op, monthly, per_case)      # creates the tables and fills them

    def downgrade() -> None:
        drop_rollups(op, monthly, per_case)

A rollup added to a database that already holds data starts equal to its GROUP BY: the
tables are filled from the source in the migration's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from lockstep.aggregates.rollup import Rollup


def create_rollups(op: Any, *rollups: Rollup, fill: bool = True) -> None:
    """Create the rollup tables (if missing) and, with ``fill``, load them from the source."""
    bind = op.get_bind()
    for rollup in rollups:
        rollup.table.create(bind, checkfirst=True)
        if fill:
            columns = [c.name for c in rollup.table.c]
            bind.execute(insert(rollup.table).from_select(columns, rollup.grouped()))


def drop_rollups(op: Any, *rollups: Rollup) -> None:
    """Drop the rollup tables (from a migration's ``downgrade()``)."""
    bind = op.get_bind()
    for rollup in reversed(rollups):
        rollup.table.drop(bind, checkfirst=True)
