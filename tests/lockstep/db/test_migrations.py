"""Running an application's Alembic migrations through lockstep.db on both backends."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

from lockstep.db import Database, current_revision, head_revision, upgrade

ENV_PY = """
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
"""

CREATE_ITEMS = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )


def downgrade():
    op.drop_table("items")
"""

ADD_NOTE = """
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("items", sa.Column("note", sa.Text, nullable=True))


def downgrade():
    op.drop_column("items", "note")
"""


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """A two-revision Alembic script directory whose env.py uses the shared connection."""
    directory = tmp_path / "migrations"
    (directory / "versions").mkdir(parents=True)
    (directory / "env.py").write_text(textwrap.dedent(ENV_PY))
    (directory / "versions" / "0001_create_items.py").write_text(CREATE_ITEMS)
    (directory / "versions" / "0002_add_note.py").write_text(ADD_NOTE)
    return directory


def test_head_revision_reads_the_script_directory(scripts: Path) -> None:
    assert head_revision(scripts) == "0002"
    assert head_revision(str(scripts)) == "0002"


async def test_fresh_database_has_no_revision(database: Database) -> None:
    assert await current_revision(database) is None


async def test_upgrade_step_by_step_then_to_head(database: Database, scripts: Path) -> None:
    await upgrade(database, scripts, "0001")
    assert await current_revision(database) == "0001"

    await upgrade(database, scripts)
    assert await current_revision(database) == "0002"

    async with database.writer() as session:
        await session.execute(text("INSERT INTO items (id, name, note) VALUES (1, 'a', 'n')"))
    async with database.reader() as session:
        assert await session.scalar(text("SELECT note FROM items WHERE id = 1")) == "n"


async def test_upgrade_at_head_is_a_no_op(database: Database, scripts: Path) -> None:
    await upgrade(database, scripts)
    async with database.writer() as session:
        await session.execute(text("INSERT INTO items (id, name) VALUES (1, 'kept')"))

    await upgrade(database, scripts)

    assert await current_revision(database) == head_revision(scripts)
    async with database.reader() as session:
        assert await session.scalar(text("SELECT name FROM items")) == "kept"


async def test_failed_migration_leaves_the_previous_revision(
    database: Database, scripts: Path
) -> None:
    await upgrade(database, scripts)
    broken = ADD_NOTE.replace('"0002"', '"0003"', 1).replace('"0001"', '"0002"', 1)
    broken = broken.replace('"note"', '"name"')  # a column that already exists
    (scripts / "versions" / "0003_broken.py").write_text(broken)

    with pytest.raises(Exception, match=r"(?i)duplicate|already exists"):
        await upgrade(database, scripts)

    assert await current_revision(database) == "0002"
