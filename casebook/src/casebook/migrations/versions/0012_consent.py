"""Accounts are versioned; consent records gain a legal basis, an expiry and who recorded
them; the ledger gains the counterparty and account indexes

Revision ID: 0012_consent
Revises: 0011_evidence
Create Date: 2026-12-06

Consent recorded before this revision has the legal basis ``consent``, no expiry and no
recorder (it was seeded or written by hand).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_consent"
down_revision = "0011_evidence"
branch_labels = None
depends_on = None

COUNTERPARTY_INDEX = [
    "organization_id", "case_id", "counterparty", "posted_on", "direction", "currency",
    "amount_cents",
]  # fmt: skip
ACCOUNT_INDEX = [
    "account_id", "posted_on", "direction", "currency", "amount_cents", "organization_id",
]  # fmt: skip


def upgrade() -> None:
    # Added in place (SQLite's ADD COLUMN, the foreign key as a column constraint): a batch
    # copy would lose the tables' AUTOINCREMENT (0008).
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE consent_records ADD COLUMN recorded_by_id INTEGER "
            "CONSTRAINT fk_consent_records_recorded_by_id_users REFERENCES users (id)"
        )
    else:
        op.add_column("consent_records", sa.Column("recorded_by_id", sa.Integer()))
        op.create_foreign_key(
            "fk_consent_records_recorded_by_id_users",
            "consent_records",
            "users",
            ["recorded_by_id"],
            ["id"],
        )
    with op.batch_alter_table("consent_records", recreate="never") as batch:
        batch.add_column(
            sa.Column("legal_basis", sa.String(length=20), nullable=False, server_default="consent")
        )
        batch.add_column(sa.Column("expires_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("accounts", recreate="never") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.create_index("ix_transactions_org_case_counterparty", "transactions", COUNTERPARTY_INDEX)
    op.create_index("ix_transactions_account_posted", "transactions", ACCOUNT_INDEX)
    # Its first column: the single-column index only competed with it for the same reads.
    op.drop_index("ix_transactions_account_id", table_name="transactions")


def downgrade() -> None:
    op.create_index("ix_transactions_account_id", "transactions", ["account_id"])
    op.drop_index("ix_transactions_account_posted", table_name="transactions")
    op.drop_index("ix_transactions_org_case_counterparty", table_name="transactions")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("version")
    with op.batch_alter_table("consent_records") as batch:
        batch.drop_column("version")
        batch.drop_column("created_at")
        batch.drop_column("expires_on")
        batch.drop_column("legal_basis")
        batch.drop_column("recorded_by_id")
