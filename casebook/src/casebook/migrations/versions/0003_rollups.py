"""dashboard rollups (filled from the existing ledger) and CSV import records

The rollups' tables and first fill are written out here (frozen), not computed from
casebook.rollups: this migration must create the same tables forever, whatever rollups the
code declares later (a new rollup gets a migration of its own: `lockstep migration rollup`).

Revision ID: 0003_rollups
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_rollups"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_monthly",
        sa.Column("organization_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("month", sa.String(length=7), autoincrement=False, nullable=False),
        sa.Column("category", sa.String(length=40), autoincrement=False, nullable=False),
        sa.Column(
            "direction",
            sa.Enum("debit", "credit", name="direction", native_enum=False, length=20),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), autoincrement=False, nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("largest_cents", sa.BigInteger(), nullable=True),
        sa.Column("largest_cents_n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id",
            "month",
            "category",
            "direction",
            "currency",
            name=op.f("pk_rollup_monthly"),
        ),
    )
    # rollup_monthly starts equal to the GROUP BY of the rows already there.
    op.execute(
        sa.text(
            {
                "postgresql": (
                    "INSERT INTO rollup_monthly (organization_id, month, category, direction, "
                    "currency, row_count, amount_cents, largest_cents, largest_cents_n) SELECT "
                    "g.organization_id, g.month, g.category, g.direction, g.currency, count(*) AS "
                    "row_count, CAST(coalesce(sum(g.v_amount_cents), 0) AS BIGINT) AS "
                    "amount_cents, max(g.v_amount_cents) AS largest_cents, CAST(sum(CASE WHEN "
                    "(g.v_amount_cents = g.w0) THEN 1 ELSE 0 END) AS BIGINT) AS largest_cents_n "
                    "FROM (SELECT transactions.organization_id AS organization_id, "
                    "to_char(transactions.posted_on, 'YYYY-MM') AS month, transactions.category "
                    "AS category, transactions.direction AS direction, transactions.currency AS "
                    "currency, transactions.amount_cents AS v_amount_cents, "
                    "max(transactions.amount_cents) OVER (PARTITION BY "
                    "transactions.organization_id, to_char(transactions.posted_on, 'YYYY-MM'), "
                    "transactions.category, transactions.direction, transactions.currency) AS w0 "
                    "FROM transactions WHERE transactions.flagged = false) AS g GROUP BY "
                    "g.organization_id, g.month, g.category, g.direction, g.currency"
                ),
                "sqlite": (
                    "INSERT INTO rollup_monthly (organization_id, month, category, direction, "
                    "currency, row_count, amount_cents, largest_cents, largest_cents_n) SELECT "
                    "g.organization_id, g.month, g.category, g.direction, g.currency, count(*) AS "
                    "row_count, CAST(coalesce(sum(g.v_amount_cents), 0) AS BIGINT) AS "
                    "amount_cents, max(g.v_amount_cents) AS largest_cents, CAST(sum(CASE WHEN "
                    "(g.v_amount_cents = g.w0) THEN 1 ELSE 0 END) AS BIGINT) AS largest_cents_n "
                    "FROM (SELECT transactions.organization_id AS organization_id, "
                    "strftime('%Y-%m', transactions.posted_on) AS month, transactions.category AS "
                    "category, transactions.direction AS direction, transactions.currency AS "
                    "currency, transactions.amount_cents AS v_amount_cents, "
                    "max(transactions.amount_cents) OVER (PARTITION BY "
                    "transactions.organization_id, strftime('%Y-%m', transactions.posted_on), "
                    "transactions.category, transactions.direction, transactions.currency) AS w0 "
                    "FROM transactions WHERE transactions.flagged = 0) AS g GROUP BY "
                    "g.organization_id, g.month, g.category, g.direction, g.currency"
                ),
            }[op.get_context().dialect.name]
        )
    )

    op.create_table(
        "rollup_monthly_flagged",
        sa.Column("organization_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("month", sa.String(length=7), autoincrement=False, nullable=False),
        sa.Column("currency", sa.String(length=3), autoincrement=False, nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("largest_cents", sa.BigInteger(), nullable=True),
        sa.Column("largest_cents_n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "month", "currency", name=op.f("pk_rollup_monthly_flagged")
        ),
    )
    # rollup_monthly_flagged starts equal to the GROUP BY of the rows already there.
    op.execute(
        sa.text(
            {
                "postgresql": (
                    "INSERT INTO rollup_monthly_flagged (organization_id, month, currency, "
                    "row_count, amount_cents, largest_cents, largest_cents_n) SELECT "
                    "g.organization_id, g.month, g.currency, count(*) AS row_count, "
                    "CAST(coalesce(sum(g.v_amount_cents), 0) AS BIGINT) AS amount_cents, "
                    "max(g.v_amount_cents) AS largest_cents, CAST(sum(CASE WHEN (g.v_amount_cents "
                    "= g.w0) THEN 1 ELSE 0 END) AS BIGINT) AS largest_cents_n FROM (SELECT "
                    "transactions.organization_id AS organization_id, "
                    "to_char(transactions.posted_on, 'YYYY-MM') AS month, transactions.currency "
                    "AS currency, transactions.amount_cents AS v_amount_cents, "
                    "max(transactions.amount_cents) OVER (PARTITION BY "
                    "transactions.organization_id, to_char(transactions.posted_on, 'YYYY-MM'), "
                    "transactions.currency) AS w0 FROM transactions WHERE transactions.flagged = "
                    "true) AS g GROUP BY g.organization_id, g.month, g.currency"
                ),
                "sqlite": (
                    "INSERT INTO rollup_monthly_flagged (organization_id, month, currency, "
                    "row_count, amount_cents, largest_cents, largest_cents_n) SELECT "
                    "g.organization_id, g.month, g.currency, count(*) AS row_count, "
                    "CAST(coalesce(sum(g.v_amount_cents), 0) AS BIGINT) AS amount_cents, "
                    "max(g.v_amount_cents) AS largest_cents, CAST(sum(CASE WHEN (g.v_amount_cents "
                    "= g.w0) THEN 1 ELSE 0 END) AS BIGINT) AS largest_cents_n FROM (SELECT "
                    "transactions.organization_id AS organization_id, strftime('%Y-%m', "
                    "transactions.posted_on) AS month, transactions.currency AS currency, "
                    "transactions.amount_cents AS v_amount_cents, max(transactions.amount_cents) "
                    "OVER (PARTITION BY transactions.organization_id, strftime('%Y-%m', "
                    "transactions.posted_on), transactions.currency) AS w0 FROM transactions "
                    "WHERE transactions.flagged = 1) AS g GROUP BY g.organization_id, g.month, "
                    "g.currency"
                ),
            }[op.get_context().dialect.name]
        )
    )

    op.create_table(
        "rollup_case",
        sa.Column("organization_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("case_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("category", sa.String(length=40), autoincrement=False, nullable=False),
        sa.Column(
            "direction",
            sa.Enum("debit", "credit", name="direction", native_enum=False, length=20),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), autoincrement=False, nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("largest_cents", sa.BigInteger(), nullable=True),
        sa.Column("largest_cents_n", sa.BigInteger(), nullable=False),
        sa.Column("first_posted_on", sa.Date(), nullable=True),
        sa.Column("first_posted_on_n", sa.BigInteger(), nullable=False),
        sa.Column("last_posted_on", sa.Date(), nullable=True),
        sa.Column("last_posted_on_n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id",
            "case_id",
            "category",
            "direction",
            "currency",
            name=op.f("pk_rollup_case"),
        ),
    )
    # rollup_case starts equal to the GROUP BY of the rows already there.
    op.execute(
        sa.text(
            {
                "postgresql": (
                    "INSERT INTO rollup_case (organization_id, case_id, category, direction, "
                    "currency, row_count, amount_cents, largest_cents, largest_cents_n, "
                    "first_posted_on, first_posted_on_n, last_posted_on, last_posted_on_n) SELECT "
                    "g.organization_id, g.case_id, g.category, g.direction, g.currency, count(*) "
                    "AS row_count, CAST(coalesce(sum(g.v_amount_cents), 0) AS BIGINT) AS "
                    "amount_cents, max(g.v_amount_cents) AS largest_cents, CAST(sum(CASE WHEN "
                    "(g.v_amount_cents = g.w0) THEN 1 ELSE 0 END) AS BIGINT) AS largest_cents_n, "
                    "min(g.v_posted_on) AS first_posted_on, CAST(sum(CASE WHEN (g.v_posted_on = "
                    "g.w1) THEN 1 ELSE 0 END) AS BIGINT) AS first_posted_on_n, max(g.v_posted_on) "
                    "AS last_posted_on, CAST(sum(CASE WHEN (g.v_posted_on = g.w2) THEN 1 ELSE 0 "
                    "END) AS BIGINT) AS last_posted_on_n FROM (SELECT "
                    "transactions.organization_id AS organization_id, transactions.case_id AS "
                    "case_id, transactions.category AS category, transactions.direction AS "
                    "direction, transactions.currency AS currency, transactions.amount_cents AS "
                    "v_amount_cents, transactions.posted_on AS v_posted_on, "
                    "max(transactions.amount_cents) OVER (PARTITION BY "
                    "transactions.organization_id, transactions.case_id, transactions.category, "
                    "transactions.direction, transactions.currency) AS w0, "
                    "min(transactions.posted_on) OVER (PARTITION BY transactions.organization_id, "
                    "transactions.case_id, transactions.category, transactions.direction, "
                    "transactions.currency) AS w1, max(transactions.posted_on) OVER (PARTITION BY "
                    "transactions.organization_id, transactions.case_id, transactions.category, "
                    "transactions.direction, transactions.currency) AS w2 FROM transactions WHERE "
                    "true) AS g GROUP BY g.organization_id, g.case_id, g.category, g.direction, "
                    "g.currency"
                ),
                "sqlite": (
                    "INSERT INTO rollup_case (organization_id, case_id, category, direction, "
                    "currency, row_count, amount_cents, largest_cents, largest_cents_n, "
                    "first_posted_on, first_posted_on_n, last_posted_on, last_posted_on_n) SELECT "
                    "g.organization_id, g.case_id, g.category, g.direction, g.currency, count(*) "
                    "AS row_count, CAST(coalesce(sum(g.v_amount_cents), 0) AS BIGINT) AS "
                    "amount_cents, max(g.v_amount_cents) AS largest_cents, CAST(sum(CASE WHEN "
                    "(g.v_amount_cents = g.w0) THEN 1 ELSE 0 END) AS BIGINT) AS largest_cents_n, "
                    "min(g.v_posted_on) AS first_posted_on, CAST(sum(CASE WHEN (g.v_posted_on = "
                    "g.w1) THEN 1 ELSE 0 END) AS BIGINT) AS first_posted_on_n, max(g.v_posted_on) "
                    "AS last_posted_on, CAST(sum(CASE WHEN (g.v_posted_on = g.w2) THEN 1 ELSE 0 "
                    "END) AS BIGINT) AS last_posted_on_n FROM (SELECT "
                    "transactions.organization_id AS organization_id, transactions.case_id AS "
                    "case_id, transactions.category AS category, transactions.direction AS "
                    "direction, transactions.currency AS currency, transactions.amount_cents AS "
                    "v_amount_cents, transactions.posted_on AS v_posted_on, "
                    "max(transactions.amount_cents) OVER (PARTITION BY "
                    "transactions.organization_id, transactions.case_id, transactions.category, "
                    "transactions.direction, transactions.currency) AS w0, "
                    "min(transactions.posted_on) OVER (PARTITION BY transactions.organization_id, "
                    "transactions.case_id, transactions.category, transactions.direction, "
                    "transactions.currency) AS w1, max(transactions.posted_on) OVER (PARTITION BY "
                    "transactions.organization_id, transactions.case_id, transactions.category, "
                    "transactions.direction, transactions.currency) AS w2 FROM transactions WHERE "
                    "1 = 1) AS g GROUP BY g.organization_id, g.case_id, g.category, g.direction, "
                    "g.currency"
                ),
            }[op.get_context().dialect.name]
        )
    )

    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("claim", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("policy", sa.String(length=20), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("encoding", sa.String(length=20), nullable=False),
        sa.Column("delimiter", sa.String(length=4), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_imported", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name="fk_imports_case_id_cases", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name="fk_imports_created_by_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_imports_organization_id_organizations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_imports"),
        sa.UniqueConstraint("case_id", "claim", name="uq_imports_case_claim"),
    )
    op.create_index("ix_imports_org_case_id", "imports", ["organization_id", "case_id", "id"])
    op.create_table(
        "import_rejects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("column", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["imports.id"],
            name="fk_import_rejects_import_id_imports",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_import_rejects_organization_id_organizations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_import_rejects"),
    )
    op.create_index("ix_import_rejects_import_row", "import_rejects", ["import_id", "row_number"])


def downgrade() -> None:
    op.drop_index("ix_import_rejects_import_row", table_name="import_rejects")
    op.drop_table("import_rejects")
    op.drop_index("ix_imports_org_case_id", table_name="imports")
    op.drop_table("imports")
    op.drop_table("rollup_case")
    op.drop_table("rollup_monthly_flagged")
    op.drop_table("rollup_monthly")
