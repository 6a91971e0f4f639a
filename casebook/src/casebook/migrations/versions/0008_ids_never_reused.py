"""Ids are never reused: casebook's SQLite tables become AUTOINCREMENT

Revision ID: 0008_ids_never_reused
Revises: 0007_statements
Create Date: 2026-12-06

SQLite gives a new row the largest id + 1, so deleting the row with the largest id hands
its id to the next row: a client's link, a job's arguments or a cached answer naming that id
would then name another row. ``AUTOINCREMENT`` tables remember the largest id ever used
(``sqlite_sequence``). PostgreSQL's sequences never go back: nothing to do there.

SQLite cannot add AUTOINCREMENT to a table, so the tables are rebuilt — inside this
migration's transaction, with foreign keys on, where dropping a table others reference would
cascade into them. So all of them move aside at once (renaming a table rewrites the
references to it: the old tables keep pointing at each other), are recreated under their
names from their own DDL with ``AUTOINCREMENT`` (pointing at the new tables), filled parents
first, and the old ones dropped children first — when one is dropped nothing references it
any more, so nothing cascades. Their indexes are then created again. The largest id already
deleted is not known; from now on none is reused.
"""

from __future__ import annotations

import re

from alembic import op

revision = "0008_ids_never_reused"
down_revision = "0007_statements"
branch_labels = None
depends_on = None

# Every casebook table whose primary key is one integer id (parents before children).
TABLES = (
    "organizations",
    "users",
    "cases",
    "subjects",
    "accounts",
    "transactions",
    "consent_records",
    "adjudication_items",
    "reports",
    "outbox",
    "imports",
    "import_rejects",
    "import_profiles",
)
_PRIMARY_KEY = re.compile(r",\s*CONSTRAINT (pk_\w+) PRIMARY KEY \(id\)")
_ID_COLUMN = re.compile(r"\bid INTEGER NOT NULL(?=\s*,)")


def autoincrement_ddl(table: str, ddl: str) -> str:
    """``ddl`` (as SQLite keeps it) with the table's primary key declared AUTOINCREMENT."""
    key = _PRIMARY_KEY.search(ddl)
    if key is None or _ID_COLUMN.search(ddl) is None:
        raise RuntimeError(f"unexpected DDL for {table}: {ddl}")
    ddl = ddl[: key.start()] + ddl[key.end() :]
    column = f"id INTEGER NOT NULL CONSTRAINT {key.group(1)} PRIMARY KEY AUTOINCREMENT"
    return _ID_COLUMN.sub(column, ddl, count=1)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    schema = {
        table: bind.exec_driver_sql(
            "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL",
            (table,),
        ).all()
        for table in TABLES
    }
    for table in TABLES:
        bind.exec_driver_sql(f'ALTER TABLE "{table}" RENAME TO "_old_{table}"')
    for table in TABLES:
        ddl = next(sql for kind, sql in schema[table] if kind == "table")
        bind.exec_driver_sql(autoincrement_ddl(table, ddl))
        bind.exec_driver_sql(f'INSERT INTO "{table}" SELECT * FROM "_old_{table}"')
    for table in reversed(TABLES):
        bind.exec_driver_sql(f'DROP TABLE "_old_{table}"')
    for table in TABLES:
        for kind, sql in schema[table]:
            if kind == "index":
                bind.exec_driver_sql(sql)


def downgrade() -> None:
    # AUTOINCREMENT changes no column and no constraint: the previous revision's code runs
    # on these tables as they are. Undoing it would only bring back reused ids.
    pass
