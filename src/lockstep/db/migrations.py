"""Run an application's Alembic migrations on a :class:`Database` from async code.

The script directory is the application's; lockstep supplies the async plumbing (Alembic's
connection-sharing recipe) so ``env.py`` stays a few lines and ``serve`` can upgrade on start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from lockstep.db.database import Database


def alembic_config(script_location: str | Path, database_url: str) -> Config:
    """An Alembic Config for ``script_location`` with no ini file needed."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def upgrade(database: Database, script_location: str | Path, revision: str = "heads") -> None:
    """Upgrade the schema to ``revision`` (default: every head) in one writer connection."""
    config = alembic_config(script_location, database.settings.database_url)

    def _run(sync_connection: Any) -> None:
        config.attributes["connection"] = sync_connection
        command.upgrade(config, revision)

    async with database.writer_engine.begin() as conn:
        await conn.run_sync(_run)


async def current_revision(database: Database) -> str | None:
    """The revision(s) the database is at ("a+b" when branches are applied), or None."""

    def _read(sync_connection: Any) -> str | None:
        heads = MigrationContext.configure(sync_connection).get_current_heads()
        return "+".join(sorted(heads)) or None

    async with database.reader_engine.connect() as conn:
        return await conn.run_sync(_read)


def head_revision(script_location: str | Path) -> str | None:
    """The newest revision(s) in ``script_location``, joined like :func:`current_revision`."""
    config = alembic_config(script_location, "sqlite://")
    return "+".join(sorted(ScriptDirectory.from_config(config).get_heads())) or None
