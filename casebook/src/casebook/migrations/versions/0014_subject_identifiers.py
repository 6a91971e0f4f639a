"""Subjects' identifiers: a person's national or tax id, a company's registration number

Revision ID: 0014_subject_identifiers
Revises: 0013_org_settings
Create Date: 2026-12-06

A column of ``subjects`` with an empty server default, so existing subjects have none until
an analyst records it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_subject_identifiers"
down_revision = "0013_org_settings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (SQLite's ADD COLUMN): a batch copy would lose the table's AUTOINCREMENT (0008).
    with op.batch_alter_table("subjects", recreate="never") as batch:
        batch.add_column(
            sa.Column(
                "identifier", sa.String(length=64), nullable=False, server_default=sa.text("''")
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("subjects") as batch:
        batch.drop_column("identifier")
