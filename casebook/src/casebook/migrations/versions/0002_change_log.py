"""lockstep change log (revision 1 of lockstep's change-log tables)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from lockstep import CHANGE_LOG_TABLES

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    CHANGE_LOG_TABLES.upgrade(op, to=1)


def downgrade() -> None:
    CHANGE_LOG_TABLES.downgrade(op, to=0)
