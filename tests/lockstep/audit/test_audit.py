"""The audit trail: every write form, atomic with it, before/after, hash chains that show
tampering, and no gaps or forks under concurrent writers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, insert, select, text, update
from typer.testing import CliRunner

from lockstep.audit import AUDIT_TABLES, GLOBAL_CHAIN, Audit, acting_as
from lockstep.changes import Changes, Tracking, ensure_change_log
from lockstep.cli.app import AppSource
from lockstep.cli.root import app as lockstep_cli
from lockstep.db import Database, bulk_insert

from ..conftest import Base, Folder, Item

AUDIT = AUDIT_TABLES.metadata.tables["lockstep_audit"]


async def make(database: Database, **options: Any) -> Audit:
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(ensure_change_log)
        await conn.run_sync(AUDIT_TABLES.ensure)
    Changes(database, Tracking(Base.metadata, scopes=["org_id"], exclude=["audit_entries"]))
    settings: dict[str, Any] = {"chain_column": "org_id", "ignore": ["title"], "bulk_rows": 5}
    audit = Audit([Folder.__table__, Item.__table__], **{**settings, **options})
    audit.install(database)
    return audit


async def entries(db: Database, chain: str | None = None) -> list[dict[str, Any]]:
    stmt = select(AUDIT).order_by(AUDIT.c.chain, AUDIT.c.seq)
    if chain is not None:
        stmt = stmt.where(AUDIT.c.chain == chain)
    async with db.reader() as s:
        rows = (await s.execute(stmt)).all()
    return [{**r._mapping, "changes": orjson.loads(r.changes)} for r in rows]


async def test_rows_are_recorded_with_who_before_and_after(database: Database) -> None:
    audit = await make(database)
    with acting_as("user:7"):
        async with database.writer() as s:
            s.add(Folder(id=1, org_id=10, name="one"))
            s.add(Item(id=5, org_id=10, folder_id=1, title="x"))
        async with database.writer() as s:
            item = await s.get(Item, 5)
            assert item is not None
            item.folder_id, item.title = 1, "changed only in an ignored column"
            folder = await s.get(Folder, 1)
            assert folder is not None
            folder.name = "renamed"
        async with database.writer() as s:
            await s.delete(await s.get(Item, 5))
    found = await entries(database, "10")
    assert [(e["seq"], e["table_name"], e["row_key"], e["op"]) for e in found] == [
        (1, "folders", "1", "insert"),
        (2, "items", "5", "insert"),
        (3, "folders", "1", "update"),
        (4, "items", "5", "delete"),
    ]
    assert {e["actor"] for e in found} == {"user:7"}
    assert found[2]["changes"] == {"name": ["one", "renamed"]}  # only what changed
    assert "title" not in found[1]["changes"]  # ignored
    assert found[3]["changes"]["folder_id"] == [1, None]
    (report,) = await audit.verify(database)
    assert (report.chain, report.entries, report.ok) == ("10", 4, True)


async def test_rolled_back_writes_and_savepoints_leave_no_entry(database: Database) -> None:
    await make(database)

    async def failing() -> None:
        async with database.writer() as s:
            s.add(Folder(id=1, org_id=1))
            await s.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    async with database.writer() as s:
        s.add(Folder(id=2, org_id=1))
        nested = await s.begin_nested()
        s.add(Folder(id=3, org_id=1))
        await s.flush()
        await nested.rollback()
    assert [e["row_key"] for e in await entries(database)] == ["2"]


async def test_statements_and_bulk_inserts_are_one_entry_each(database: Database) -> None:
    audit = await make(database)
    async with database.writer() as s:
        await bulk_insert(s, Folder.__table__, [{"id": i, "org_id": 1 + i % 2} for i in range(10)])
    async with database.writer() as s:
        await s.execute(update(Folder).where(Folder.org_id == 1).values(name="bulk"))
        await s.execute(text("UPDATE folders SET name = 'raw' WHERE org_id = 2"))
        await s.execute(delete(Folder).where(Folder.id == 9))
    found = await entries(database)
    summaries = [(e["chain"], e["changes"]) for e in found if e["op"] == "insert"]
    assert sorted(summaries) == [("1", {"rows": 5}), ("2", {"rows": 5})]
    statements = [e["changes"]["statement"] for e in found if "statement" in e["changes"]]
    assert any("folders.org_id = 1" in (s or "") for s in statements)
    assert any("SET name = 'raw'" in (s or "") for s in statements)
    assert all(r.ok for r in await audit.verify(database))


async def test_verify_finds_an_altered_a_removed_and_a_cut_off_entry(database: Database) -> None:
    audit = await make(database)
    for i in range(1, 6):
        async with database.writer() as s:
            s.add(Folder(id=i, org_id=1, name=f"f{i}"))
    async with database.writer() as s:
        s.add(Folder(id=99, org_id=2))
    assert [r.ok for r in await audit.verify(database)] == [True, True]

    async def tamper(sql: str) -> None:
        async with database.writer_engine.begin() as conn:  # behind lockstep's back
            await conn.execute(text(sql))

    await tamper("UPDATE lockstep_audit SET changes = '{\"name\": [null, \"forged\"]}' "
                 "WHERE chain = '1' AND seq = 3")  # fmt: skip
    (one, two) = await audit.verify(database)
    assert (one.broken.seq if one.broken else None, two.ok) == (3, True)
    assert one.broken is not None
    assert "altered" in one.broken.reason
    await tamper("DELETE FROM lockstep_audit WHERE chain = '1' AND seq = 3")
    (one, _) = await audit.verify(database)
    assert one.broken is not None
    assert (one.broken.seq, "expected entry 3" in one.broken.reason) == (4, True)
    await tamper("DELETE FROM lockstep_audit WHERE chain = '2'")  # the whole tail
    (_, two) = await audit.verify(database)
    assert two.broken is not None
    assert "head" in two.broken.reason


async def test_without_a_chain_column_every_entry_is_on_one_chain(database: Database) -> None:
    audit = await make(database, chain_column=None)
    async with database.writer() as s:
        s.add_all([Folder(id=1, org_id=3), Folder(id=2, org_id=4)])
    assert [(e["chain"], e["seq"]) for e in await entries(database)] == [
        (GLOBAL_CHAIN, 1),
        (GLOBAL_CHAIN, 2),
    ]
    assert [r.ok for r in await audit.verify(database)] == [True]


async def test_concurrent_writers_of_one_chain_leave_no_gap_and_no_fork(
    postgres_url: str, make_database: Callable[..., Database]
) -> None:
    database = make_database(postgres_url, db_pool_size=8)
    audit = await make(database)
    async with database.writer() as s:
        s.add(Folder(id=1, org_id=1))
    release = asyncio.Barrier(6)

    async def write(i: int) -> None:
        await release.wait()
        async with database.writer() as s:
            await s.execute(insert(Item).values(id=100 + i, org_id=1, folder_id=1))
            s.add(Item(id=200 + i, org_id=1, folder_id=1))

    async with asyncio.timeout(60):
        await asyncio.gather(*(write(i) for i in range(6)))
    found = await entries(database, "1")
    assert [e["seq"] for e in found] == list(range(1, 14))
    (report,) = await audit.verify(database)
    assert (report.entries, report.ok) == (13, True)


async def test_the_cli_verifies_the_trail_and_exits_1_when_it_is_broken(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lockstep audit verify`` on any app: intact → exit 0, tampered → exit 1, one line."""
    await make(database)
    async with database.writer() as s:
        s.add_all([Folder(id=1, org_id=1), Folder(id=2, org_id=2)])

    class App:
        pass

    def build() -> App:
        app = App()
        app.database = Database(database.settings)  # type: ignore[attr-defined]
        return app

    runner = CliRunner()

    def verify(*extra: str) -> Any:
        return runner.invoke(
            lockstep_cli, ["audit", "verify", *extra], obj=AppSource(factory=build)
        )

    intact = await asyncio.to_thread(verify, "--json")
    assert intact.exit_code == 0, intact.output
    assert [r["ok"] for r in orjson.loads(intact.output)] == [True, True]
    async with database.writer_engine.begin() as conn:
        await conn.execute(
            text("UPDATE lockstep_audit SET actor = 'someone else' WHERE chain = '2'")
        )
    broken = await asyncio.to_thread(verify)
    assert broken.exit_code == 1, broken.output
    assert "Traceback" not in broken.output
    assert "1 audit chain(s) broken: 2" in broken.output
