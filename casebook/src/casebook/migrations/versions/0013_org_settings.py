"""Organization settings: default currency, adjudication lease minutes, report footer

Revision ID: 0013_org_settings
Revises: 0012_consent
Create Date: 2026-12-06

Columns of ``organizations`` with server defaults, so every existing organization keeps
today's behaviour (EUR, the deployment's lease length, no footer) until an admin changes them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_org_settings"
down_revision = "0012_consent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (SQLite's ADD COLUMN): a batch copy would lose the table's AUTOINCREMENT (0008).
    with op.batch_alter_table("organizations", recreate="never") as batch:
        batch.add_column(
            sa.Column("default_currency", sa.String(length=3), nullable=False, server_default="EUR")
        )
        batch.add_column(sa.Column("adjudication_lease_minutes", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column(
                "report_footer", sa.String(length=200), nullable=False, server_default=sa.text("''")
            )
        )
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        for column in (
            "version",
            "report_footer",
            "adjudication_lease_minutes",
            "default_currency",
        ):
            batch.drop_column(column)
