"""Checking at start-up that lockstep's tables are at the revisions this code needs.

    await check_tables(database, CHANGE_LOG_TABLES, JOBS_TABLES)   # raises SchemaError

Upgrading lockstep can raise the revision a set of tables needs; the application's
migrations only move them when someone adds the migration that says so. This check turns
"a query fails on a missing column at 3 a.m." into one message at start-up that says which
tables are behind and what to write and run. It reads one row per set (and, for a database
from before revisions were recorded, whether the set's first table exists).
"""

from __future__ import annotations

from typing import Any

from lockstep.db import Database
from lockstep.exceptions import SchemaError
from lockstep.schema.revision import VersionedTables


async def table_revisions(database: Database, *sets: VersionedTables) -> dict[str, int]:
    """The revision the database holds of each set, by name (0: not created)."""

    def read(connection: Any) -> dict[str, int]:
        return {s.name: s.revision(connection) for s in sets}

    async with database.reader_engine.connect() as connection:
        return await connection.run_sync(read)


def mismatch(tables: VersionedTables, found: int) -> str | None:
    """What is wrong when the database holds revision ``found`` of ``tables`` (None: all
    is well), written for the person who has to fix it."""
    needed = tables.latest
    if found == needed:
        return None
    write = (
        f"add a migration whose upgrade() calls {tables.symbol}.upgrade(op, to={needed}) "
        "(`lockstep migration tables` writes it), then run your migrations"
    )
    if found == 0:
        return (
            f"lockstep's {tables.label} tables do not exist (this code needs revision "
            f"{needed}): {write}"
        )
    if found < needed:
        return (
            f"lockstep's {tables.label} tables are at revision {found}, this version of "
            f"lockstep needs revision {needed}: {write}"
        )
    return (
        f"lockstep's {tables.label} tables are at revision {found}, newer than this version "
        f"of lockstep knows ({needed}): run the lockstep version that migrated them"
    )


async def check_tables(database: Database, *sets: VersionedTables) -> None:
    """Raise :class:`SchemaError` (every problem, one per line) unless the database holds
    exactly the revision this code needs of each set."""
    found = await table_revisions(database, *sets)
    problems = [p for s in sets if (p := mismatch(s, found[s.name])) is not None]
    if problems:
        raise SchemaError("\n".join(problems), details={"revisions": found})
