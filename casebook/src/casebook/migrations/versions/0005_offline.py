"""Offline sync: lockstep's shape log and idempotent-push tables (revision 1)

Revision ID: 0005_offline
Revises: 0004_import_jobs
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from lockstep.offline import OFFLINE_TABLES

revision = "0005_offline"
down_revision = "0004_import_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    OFFLINE_TABLES.upgrade(op, to=1)


def downgrade() -> None:
    OFFLINE_TABLES.downgrade(op, to=0)
