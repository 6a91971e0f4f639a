"""CSV imports run as jobs: imports.job_id (and the two 0003 heads joined)

Revision ID: 0004_import_jobs
Revises: 0003_jobs, 0003_rollups
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_import_jobs"
down_revision = ("0003_jobs", "0003_rollups")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("imports") as batch:
        batch.add_column(sa.Column("job_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("job_id")
