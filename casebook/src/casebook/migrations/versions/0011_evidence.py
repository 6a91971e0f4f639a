"""Case notes, evidence files and their chain of custody

Revision ID: 0011_evidence
Revises: 0010_adjudication
Create Date: 2026-12-06

Three new tables (``AUTOINCREMENT`` on SQLite, like every other since 0008): ``notes``,
``evidence`` (a file's metadata; the file itself lives in the data directory under its
SHA-256) and ``evidence_custody`` (append-only events of each item: a trigger refuses any
UPDATE of one).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0011_evidence"
down_revision = "0010_adjudication"
branch_labels = None
depends_on = None


def _at(name: str, *, nullable: bool = False) -> sa.Column[dt.datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notes_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], ondelete="CASCADE", name=op.f("fk_notes_case_id_cases")
        ),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_notes_author_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
        sqlite_autoincrement=True,
    )
    for column in ("organization_id", "case_id", "author_id"):
        op.create_index(f"ix_notes_{column}", "notes", [column])
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("uploaded_by_id", sa.Integer(), nullable=True),
        _at("created_at"),
        _at("verified_at", nullable=True),
        sa.Column("verify_status", sa.String(length=20), nullable=True),
        _at("deleted_at", nullable=True),
        sa.Column("deleted_by_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_evidence_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], ondelete="CASCADE", name=op.f("fk_evidence_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_id"], ["users.id"], name=op.f("fk_evidence_uploaded_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["deleted_by_id"], ["users.id"], name=op.f("fk_evidence_deleted_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
        sqlite_autoincrement=True,
    )
    for column in ("organization_id", "case_id", "uploaded_by_id"):
        op.create_index(f"ix_evidence_{column}", "evidence", [column])
    op.create_table(
        "evidence_custody",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        _at("at"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_evidence_custody_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            ondelete="CASCADE",
            name=op.f("fk_evidence_custody_case_id_cases"),
        ),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["evidence.id"],
            ondelete="CASCADE",
            name=op.f("fk_evidence_custody_evidence_id_evidence"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_evidence_custody_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_custody")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_evidence_custody_case_id", "evidence_custody", ["case_id"])
    op.create_index("ix_evidence_custody_evidence_id_id", "evidence_custody", ["evidence_id", "id"])

    # Custody events are never changed: the database refuses an UPDATE of one, whoever
    # sends it (deleting a case still removes its events, through the foreign keys).
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER evidence_custody_append_only BEFORE UPDATE ON evidence_custody "
            "BEGIN SELECT RAISE(ABORT, 'evidence custody is append-only'); END"
        )
    else:
        op.execute(
            "CREATE FUNCTION evidence_custody_append_only() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'evidence custody is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER evidence_custody_append_only BEFORE UPDATE ON evidence_custody "
            "FOR EACH ROW EXECUTE FUNCTION evidence_custody_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER evidence_custody_append_only ON evidence_custody")
        op.execute("DROP FUNCTION evidence_custody_append_only()")
    op.drop_table("evidence_custody")
    op.drop_table("evidence")
    op.drop_table("notes")
