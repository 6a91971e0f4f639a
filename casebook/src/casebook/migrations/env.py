"""Alembic environment for casebook.

lockstep's ``upgrade()`` hands us a live connection in ``config.attributes["connection"]``;
the ``alembic`` command line (for ``revision --autogenerate``) gets a URL and runs async.

The autogenerate target is everything the database should hold: casebook's models, its
rollups (declared on the same metadata) and lockstep's own tables, so an autogenerate run
on an up-to-date database finds nothing to do (``tests/casebook/test_migrations.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

import casebook.rollups  # noqa: F401 - declares the rollup tables on Base.metadata
from casebook.models import Base
from lockstep import (
    AUDIT_TABLES,
    CHANGE_LOG_TABLES,
    JOBS_TABLES,
    REALTIME_TABLES,
    table_metadata,
)
from lockstep.offline import OFFLINE_TABLES

config = context.config
target_metadata = [
    Base.metadata,
    table_metadata(CHANGE_LOG_TABLES, JOBS_TABLES, OFFLINE_TABLES, REALTIME_TABLES, AUDIT_TABLES),
]


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_from_url(config.get_main_option("sqlalchemy.url") or ""))
