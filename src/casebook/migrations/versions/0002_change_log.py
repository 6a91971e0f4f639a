"""lockstep change log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from lockstep import create_change_log, drop_change_log

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_change_log(op)


def downgrade() -> None:
    drop_change_log(op)
