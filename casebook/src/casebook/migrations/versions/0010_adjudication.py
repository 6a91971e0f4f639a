"""Adjudication (flagger, priority, lease, decision) and the audit trail's tables

Revision ID: 0010_adjudication
Revises: 0009_refresh_tokens
Create Date: 2026-12-06

Items decided before this revision (their status was approved, rejected or escalated) become
``decided`` with the outcome it meant: cleared, suspicious, escalate. The audit trail starts
empty: writes before this revision were not audited.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lockstep import AUDIT_TABLES

revision = "0010_adjudication"
down_revision = "0009_refresh_tokens"
branch_labels = None
depends_on = None

OUTCOMES = {"approved": "cleared", "rejected": "suspicious", "escalated": "escalate"}


def upgrade() -> None:
    # Added in place (SQLite's ADD COLUMN, the foreign key as a column constraint): a batch
    # copy would lose the table's AUTOINCREMENT (0008).
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE adjudication_items ADD COLUMN flagged_by_id INTEGER "
            "CONSTRAINT fk_adjudication_items_flagged_by_id_users REFERENCES users (id)"
        )
    else:
        op.add_column("adjudication_items", sa.Column("flagged_by_id", sa.Integer()))
        op.create_foreign_key(
            "fk_adjudication_items_flagged_by_id_users",
            "adjudication_items",
            "users",
            ["flagged_by_id"],
            ["id"],
        )
    with op.batch_alter_table("adjudication_items", recreate="never") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="3"))
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("decision_reason", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.create_index(
        "ix_adjudication_org_status_priority",
        "adjudication_items",
        ["organization_id", "status", "priority", "id"],
    )
    items = sa.table(
        "adjudication_items",
        sa.column("status", sa.String),
        sa.column("outcome", sa.String),
    )
    for status, outcome in OUTCOMES.items():
        op.execute(
            items.update().where(items.c.status == status).values(status="decided", outcome=outcome)
        )
    AUDIT_TABLES.upgrade(op, to=1)


def downgrade() -> None:
    AUDIT_TABLES.downgrade(op, to=0)
    items = sa.table(
        "adjudication_items",
        sa.column("status", sa.String),
        sa.column("outcome", sa.String),
    )
    for status, outcome in OUTCOMES.items():
        op.execute(
            items.update()
            .where(items.c.status == "decided", items.c.outcome == outcome)
            .values(status=status)
        )
    op.drop_index("ix_adjudication_org_status_priority", table_name="adjudication_items")
    with op.batch_alter_table("adjudication_items") as batch:
        batch.drop_column("version")
        batch.drop_column("decision_reason")
        batch.drop_column("outcome")
        batch.drop_column("claimed_until")
        batch.drop_column("priority")
        batch.drop_column("flagged_by_id")
