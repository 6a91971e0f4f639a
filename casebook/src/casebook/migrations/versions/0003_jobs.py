"""lockstep jobs tables (revision 1), the notification outbox, reports.job_id

Revision ID: 0003_jobs
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lockstep import JOBS_TABLES

revision = "0003_jobs"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    JOBS_TABLES.upgrade(op, to=1)
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_outbox_organization_id_organizations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_org_id", "outbox", ["organization_id", "id"])
    op.add_column("reports", sa.Column("job_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("job_id")
    op.drop_index("ix_outbox_org_id", table_name="outbox")
    op.drop_table("outbox")
    JOBS_TABLES.downgrade(op, to=0)
