"""lockstep realtime history (revision 1 of lockstep's realtime tables)

Revision ID: 0006_realtime
Revises: 0005_offline
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from lockstep import REALTIME_TABLES

revision = "0006_realtime"
down_revision = "0005_offline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    REALTIME_TABLES.upgrade(op, to=1)


def downgrade() -> None:
    REALTIME_TABLES.downgrade(op, to=0)
