"""Bank statements: import profiles, what each import read and found, rows' import

Revision ID: 0007_statements
Revises: 0006_realtime
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_statements"
down_revision = "0006_realtime"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("mapping", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_import_profiles_organization_id_organizations",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name="fk_import_profiles_created_by_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_import_profiles"),
        sa.UniqueConstraint("organization_id", "name", name="uq_import_profiles_org_name"),
    )
    op.create_index(
        "ix_import_profiles_org_fingerprint",
        "import_profiles",
        ["organization_id", "fingerprint"],
    )
    with op.batch_alter_table("imports") as batch:
        batch.add_column(
            sa.Column("format", sa.String(length=20), nullable=False, server_default="csv")
        )
        batch.add_column(sa.Column("account", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("mapping", sa.Text(), nullable=True))
        batch.add_column(sa.Column("findings", sa.Text(), nullable=True))
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("import_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("import_id")
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("findings")
        batch.drop_column("mapping")
        batch.drop_column("account")
        batch.drop_column("format")
    op.drop_index("ix_import_profiles_org_fingerprint", table_name="import_profiles")
    op.drop_table("import_profiles")
