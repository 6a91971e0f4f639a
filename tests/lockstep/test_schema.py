"""lockstep's own tables in frozen revisions: what each revision creates, moving between
them, the record in lockstep_meta, and the start-up check (on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, inspect

from lockstep import (
    AUDIT_TABLES,
    CHANGE_LOG_TABLES,
    JOBS_TABLES,
    Database,
    Revision,
    SchemaError,
    VersionedTables,
    check_tables,
    table_metadata,
    table_revisions,
)
from lockstep.offline import OFFLINE_TABLES
from lockstep.realtime import REALTIME_TABLES
from lockstep.testing import dump_schema

# -- a set of two revisions, to move between ---------------------------------------------------

demo_metadata = MetaData()
Table(
    "demo_items",
    demo_metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
    Column("note", Text, nullable=True),
    Index("ix_demo_items_name", "name"),
)


def _create_items(ops: Operations) -> None:
    ops.create_table(
        "demo_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )


def _drop_items(ops: Operations) -> None:
    ops.drop_table("demo_items")


def _add_note(ops: Operations) -> None:
    with ops.batch_alter_table("demo_items") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
    ops.create_index("ix_demo_items_name", "demo_items", ["name"])


def _drop_note(ops: Operations) -> None:
    ops.drop_index("ix_demo_items_name", table_name="demo_items")
    with ops.batch_alter_table("demo_items") as batch:
        batch.drop_column("note")


DEMO = VersionedTables(
    "demo",
    label="demo",
    symbol="DEMO_TABLES",
    marker="demo_items",
    metadata=demo_metadata,
    revisions=[
        Revision(1, "demo_items", _create_items, _drop_items),
        Revision(2, "demo_items.note", _add_note, _drop_note),
    ],
)


async def sync(database: Database, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(connection)`` in one committed writer transaction."""
    async with database.writer_engine.begin() as connection:
        return await connection.run_sync(fn)


def columns(connection: Any, table: str) -> list[str]:
    return [c["name"] for c in inspect(connection).get_columns(table)]


def differences(connection: Any, tables: VersionedTables) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, table_metadata(tables)))


# -- what the revisions create ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tables",
    [CHANGE_LOG_TABLES, JOBS_TABLES, AUDIT_TABLES, OFFLINE_TABLES, REALTIME_TABLES, DEMO],
    ids=lambda t: t.name,
)
async def test_the_latest_revision_is_what_the_code_queries(
    database: Database, tables: VersionedTables
) -> None:
    """Applying every frozen revision from nothing gives exactly the live tables: a change
    to a live definition without a revision (or the reverse) fails here."""
    await sync(database, tables.ensure)
    assert await sync(database, lambda c: differences(c, tables)) == []
    assert await table_revisions(database, tables) == {tables.name: tables.latest}
    await check_tables(database, tables)


async def test_the_apps_migration_settings_do_not_change_lockstep_ddl(database: Database) -> None:
    """The app's naming convention and batch mode (its env.py) reach `op`; a revision runs on
    operations of its own, so its DDL is the same from any app."""
    await sync(database, lambda c: (JOBS_TABLES.ensure(c), CHANGE_LOG_TABLES.ensure(c)))
    plain = await sync(database, dump_schema)
    await sync(database, lambda c: JOBS_TABLES.downgrade_connection(c, to=0))
    await sync(database, lambda c: CHANGE_LOG_TABLES.downgrade_connection(c, to=0))
    assert "lockstep" not in await sync(database, dump_schema)

    convention = {
        "pk": "pk_%(table_name)s",
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s",
    }

    def from_an_app(connection: Any) -> None:
        opts = {"target_metadata": MetaData(naming_convention=convention), "render_as_batch": True}
        op = Operations(MigrationContext.configure(connection, opts=opts))
        JOBS_TABLES.upgrade(op, to=1)
        CHANGE_LOG_TABLES.upgrade(op, to=1)

    await sync(database, from_an_app)
    assert await sync(database, dump_schema) == plain


# -- moving between revisions -------------------------------------------------------------------


async def test_upgrade_step_by_step_then_down_to_nothing(database: Database) -> None:
    await sync(database, lambda c: DEMO.upgrade_connection(c, to=1))
    assert await sync(database, lambda c: columns(c, "demo_items")) == ["id", "name"]
    assert await table_revisions(database, DEMO) == {"demo": 1}

    await sync(database, lambda c: DEMO.upgrade_connection(c, to=2))
    await sync(database, lambda c: DEMO.upgrade_connection(c, to=2))  # already there: nothing
    assert await sync(database, lambda c: columns(c, "demo_items")) == ["id", "name", "note"]
    assert await table_revisions(database, DEMO) == {"demo": 2}

    await sync(database, lambda c: DEMO.downgrade_connection(c, to=1))
    assert await sync(database, lambda c: columns(c, "demo_items")) == ["id", "name"]
    await sync(database, lambda c: DEMO.downgrade_connection(c, to=0))
    assert await sync(database, lambda c: inspect(c).get_table_names()) == []
    assert await table_revisions(database, DEMO) == {"demo": 0}


async def test_wrong_directions_and_unknown_revisions_are_refused(database: Database) -> None:
    await sync(database, lambda c: DEMO.upgrade_connection(c, to=1))
    before = await sync(database, dump_schema)
    with pytest.raises(SchemaError, match=r"revisions 1\.\.2 in this version of lockstep, not 3"):
        await sync(database, lambda c: DEMO.upgrade_connection(c, to=3))
    with pytest.raises(SchemaError, match="at revision 1, below 2: a downgrade cannot go up"):
        await sync(database, lambda c: DEMO.downgrade_connection(c, to=2))
    await sync(database, lambda c: DEMO.upgrade_connection(c, to=2))
    with pytest.raises(SchemaError, match="at revision 2, past 1: an upgrade cannot go back"):
        await sync(database, lambda c: DEMO.upgrade_connection(c, to=1))
    await sync(database, lambda c: DEMO.downgrade_connection(c, to=1))
    assert await sync(database, dump_schema) == before


def test_revisions_must_be_numbered_from_one() -> None:
    with pytest.raises(Exception, match=r"numbered 1\.\.n"):
        VersionedTables(
            "bad",
            label="bad",
            symbol="BAD",
            marker="bad",
            metadata=MetaData(),
            revisions=[Revision(2, "two", _create_items, _drop_items)],
        )


async def test_tables_from_before_revisions_were_recorded_are_revision_1(
    database: Database,
) -> None:
    """lockstep 0.1 created its tables without a record: they are revision 1, and move on
    from there."""
    await sync(database, lambda c: _create_items(Operations(MigrationContext.configure(c))))
    assert await table_revisions(database, DEMO) == {"demo": 1}
    await sync(database, lambda c: DEMO.upgrade_connection(c, to=2))
    assert await table_revisions(database, DEMO) == {"demo": 2}
    assert await sync(database, lambda c: columns(c, "demo_items")) == ["id", "name", "note"]


async def test_the_bookkeeping_table_goes_with_the_last_set(database: Database) -> None:
    await sync(database, lambda c: (CHANGE_LOG_TABLES.ensure(c), DEMO.ensure(c)))
    await sync(database, lambda c: DEMO.downgrade_connection(c, to=0))
    assert await sync(database, lambda c: inspect(c).has_table("lockstep_meta"))
    assert await table_revisions(database, CHANGE_LOG_TABLES, DEMO) == {"change_log": 1, "demo": 0}
    await sync(database, lambda c: CHANGE_LOG_TABLES.downgrade_connection(c, to=0))
    assert await sync(database, lambda c: inspect(c).get_table_names()) == []


# -- the start-up check -------------------------------------------------------------------------


async def test_check_says_what_to_write_and_run(database: Database) -> None:
    with pytest.raises(SchemaError) as missing:
        await check_tables(database, DEMO)
    assert "demo tables do not exist" in missing.value.message
    assert "DEMO_TABLES.upgrade(op, to=2)" in missing.value.message

    await sync(database, lambda c: DEMO.upgrade_connection(c, to=1))
    with pytest.raises(SchemaError) as behind:
        await check_tables(database, DEMO)
    assert "at revision 1, this version of lockstep needs revision 2" in behind.value.message
    assert "`lockstep migration tables` writes it" in behind.value.message

    await sync(database, lambda c: DEMO.upgrade_connection(c, to=2))
    await check_tables(database, DEMO)

    await sync(
        database,
        lambda c: c.execute(
            sa.text("UPDATE lockstep_meta SET value = '3' WHERE name = 'schema.demo'")
        ),
    )
    with pytest.raises(SchemaError, match="newer than this version of lockstep knows"):
        await check_tables(database, DEMO)
