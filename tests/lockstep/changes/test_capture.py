"""Every write path through a session lands in the log, atomically, and is published once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import bindparam, delete, event, func, insert, select, text, update

from lockstep.changes import Prelude, defer_to_log
from lockstep.changes.log import changes_table
from lockstep.exceptions import UnattributedWriteError
from lockstep.types import Change

from ..conftest import AuditEntry, Feed, Folder, Item, Tag


def _by_table(feed: Feed) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = {}
    for changeset in feed.published:
        for change in changeset.changes:
            out.setdefault(change.table, []).append(change)
    return out


async def _log_rows(feed: Feed) -> int:
    async with feed.db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(changes_table)) or 0)


async def test_orm_insert_update_delete_are_captured_with_scopes(feed: Feed) -> None:
    async with feed.db.writer() as s:
        s.add_all([Folder(id=1, org_id=10), Folder(id=2, org_id=10)])
        s.add(Item(id=5, org_id=10, folder_id=1, title="a"))
    assert len(feed.published) == 1
    inserted = _by_table(feed)["items"][0]
    assert (inserted.op, inserted.key) == ("insert", ("5",))
    assert inserted.scopes == {"org_id": {"10"}, "folder_id": {"1"}}
    assert inserted.scopes_complete

    async with feed.db.writer() as s:
        item = await s.get(Item, 5)
        assert item is not None
        item.folder_id = 2  # moves between scopes: both must be invalidated
        item.title = "b"
    moved = feed.published[-1].changes[0]
    assert moved.op == "update"
    assert moved.scopes["folder_id"] == {"1", "2"}
    assert moved.columns == {"folder_id", "title"}

    async with feed.db.writer() as s:
        item = await s.get(Item, 5)
        await s.delete(item)
    (deleted,) = [c for c in feed.published[-1].changes if c.table == "items"]
    assert (deleted.op, deleted.key, deleted.scopes["folder_id"]) == ("delete", ("5",), {"2"})
    assert await _log_rows(feed) == 3
    # The published ids are the log's ids, increasing.
    ids = [cs.id for cs in feed.published]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


async def _failing_write(feed: Feed) -> None:
    async with feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1))
        await s.flush()
        raise RuntimeError("boom")


async def test_rollback_publishes_and_logs_nothing(feed: Feed) -> None:
    with pytest.raises(RuntimeError):
        await _failing_write(feed)
    assert feed.published == []
    assert await _log_rows(feed) == 0


async def test_rolled_back_savepoint_is_discarded(feed: Feed) -> None:
    async with feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1))

        async def failing_savepoint() -> None:
            async with s.begin_nested():
                s.add(Folder(id=2, org_id=2))
                await s.flush()
                raise RuntimeError("undo the savepoint")

        with pytest.raises(RuntimeError):
            await failing_savepoint()
        async with s.begin_nested():
            s.add(Folder(id=3, org_id=3))
    keys = {c.key for c in _by_table(feed)["folders"]}
    assert keys == {("1",), ("3",)}
    assert len(feed.published) == 1


async def test_nothing_changed_writes_no_log_row(feed: Feed) -> None:
    async with feed.db.writer() as s:
        await s.execute(select(Folder))
    assert feed.published == []
    assert await _log_rows(feed) == 0


async def test_untracked_tables_are_ignored(feed: Feed) -> None:
    async with feed.db.writer() as s:
        s.add(AuditEntry(text="x"))
    assert feed.published == []


async def test_bulk_insert_with_and_without_keys(feed: Feed) -> None:
    async with feed.db.writer() as s:
        await s.execute(insert(Folder), [{"id": 1, "org_id": 1}, {"id": 2, "org_id": 2}])
        await s.execute(insert(Item), [{"org_id": 1, "folder_id": 1, "title": "x"}])
        await s.execute(insert(Item).values(org_id=2, folder_id=2, title="y"))
    folders = _by_table(feed)["folders"]
    assert {c.key for c in folders} == {("1",), ("2",)}
    items = _by_table(feed)["items"]
    assert [c.key for c in items] == [None, None]
    assert [c.scopes["folder_id"] for c in items] == [{"1"}, {"2"}]
    assert all(c.scopes_complete for c in items)


async def test_update_and_delete_with_where_mark_the_whole_table(feed: Feed) -> None:
    async with feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1))
    async with feed.db.writer() as s:
        await s.execute(update(Folder).where(Folder.org_id == 1).values(name="renamed"))
        await s.execute(delete(Folder).where(Folder.id == 99))
    changes = feed.published[-1].changes
    assert [(c.table, c.op, c.key, c.scopes_complete) for c in changes] == [
        ("folders", "update", None, False),
        # The database cascades a folder delete into its items (and their tags): announced
        # with the statement, before it runs.
        ("items", "delete", None, False),
        ("item_tags", "delete", None, False),
        ("folders", "delete", None, False),
    ]


async def test_bulk_update_by_primary_key_is_row_level(feed: Feed) -> None:
    async with feed.db.writer() as s:
        s.add_all([Folder(id=1, org_id=1), Folder(id=2, org_id=1)])
    async with feed.db.writer() as s:
        await s.execute(update(Folder), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    changes = feed.published[-1].changes
    assert {c.key for c in changes} == {("1",), ("2",)}
    assert all(c.columns == {"name"} for c in changes)


async def test_raw_sql_is_captured_by_table_or_refused(feed: Feed) -> None:
    async with feed.db.writer() as s:
        await s.execute(text("INSERT INTO folders (id, org_id, name) VALUES (7, 1, 'raw')"))
        await s.execute(text("SELECT 1"))
    assert [(c.table, c.op, c.key) for c in feed.published[-1].changes] == [
        ("folders", "insert", None)
    ]
    async with feed.db.writer() as s:
        await s.execute(
            text("/* UPDATE items */ WITH v AS (SELECT 1) UPDATE folders SET name = 'x'")
        )
    assert [(c.table, c.op) for c in feed.published[-1].changes] == [("folders", "update")]
    published = len(feed.published)

    async def opaque() -> None:
        async with feed.db.writer() as s:
            s.add(Folder(id=8, org_id=1))
            await s.execute(text("CALL refresh_everything()"))

    with pytest.raises(UnattributedWriteError, match="CALL"):
        await opaque()
    assert len(feed.published) == published  # refused before it ran: nothing committed
    async with feed.db.writer() as s:
        await s.execute(
            text("SELECT 1"), execution_options={"lockstep_writes": ["folders", "items"]}
        )
    assert {(c.table, c.op) for c in feed.published[-1].changes} == {
        ("folders", "update"),
        ("items", "update"),
    }


async def test_database_cascades_mark_the_child_table(feed: Feed) -> None:
    async with feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1))
        s.add(Item(id=1, org_id=1, folder_id=1))
    async with feed.db.writer() as s:
        await s.delete(await s.get(Folder, 1))
    by_table = {c.table: c for c in feed.published[-1].changes}
    assert by_table["items"].op == "delete"
    assert by_table["items"].key is None
    assert by_table["items"].scopes == {"folder_id": {"1"}}
    assert not by_table["items"].scopes_complete
    async with feed.db.reader() as s:
        assert await s.get(Item, 1) is None


async def test_many_to_many_association_rows(feed: Feed) -> None:
    async with feed.db.writer() as s:
        s.add(Folder(id=1, org_id=1))
        s.add(Tag(id=3, label="red"))
        s.add(Item(id=1, org_id=1, folder_id=1))
    async with feed.db.writer() as s:
        item = await s.get(Item, 1)
        tag = await s.get(Tag, 3)
        assert item is not None
        assert tag is not None
        item.tags.append(tag)
    links = [c for c in feed.published[-1].changes if c.table == "item_tags"]
    assert [(c.op, c.key) for c in links] == [("insert", ("1", "3"))]
    async with feed.db.writer() as s:
        item = await s.get(Item, 1)
        assert item is not None
        item.tags.clear()
    links = [c for c in feed.published[-1].changes if c.table == "item_tags"]
    assert [(c.op, c.key) for c in links] == [("delete", ("1", "3"))]


async def test_legacy_bulk_mappings_are_captured(feed: Feed) -> None:
    """Requirement 7 (cache-http.md): bulk_insert_mappings / bulk_update_mappings too."""
    async with feed.db.writer() as s:
        await s.run_sync(
            lambda sync: sync.bulk_insert_mappings(
                Folder, [{"id": 1, "org_id": 1}, {"id": 2, "org_id": 2}]
            )
        )
    assert {c.key for c in _by_table(feed)["folders"]} == {("1",), ("2",)}
    async with feed.db.writer() as s:
        await s.run_sync(lambda sync: sync.bulk_update_mappings(Folder, [{"id": 1, "name": "x"}]))
    changes = feed.published[-1].changes
    assert [(c.table, c.op, c.key) for c in changes] == [("folders", "update", ("1",))]


async def test_a_prelude_runs_in_the_log_statement_or_alone(feed: Feed) -> None:
    """defer_to_log: on PostgreSQL the writes run with the log row (or alone when the
    transaction logs nothing); elsewhere the caller is told to run them itself."""
    audit = AuditEntry.__table__  # not tracked: writing it logs nothing
    cte = insert(audit).values(id=bindparam("n"), text="prelude").returning(audit.c.id).cte("p0")
    cache: dict[str, Any] = {}
    async with feed.db.writer() as s:
        sync = s.sync_session
        deferred = defer_to_log(sync, Prelude((cte,), {"n": 1}, cache))
        if deferred:
            s.add(Folder(id=1, org_id=1))  # logged: the prelude rides in the log statement
    assert deferred is (feed.db.backend == "postgresql")
    if not deferred:
        return
    async with feed.db.writer() as s:
        assert defer_to_log(s.sync_session, Prelude((cte,), {"n": 2}, cache))
    async with feed.db.reader() as s:
        ids = list((await s.scalars(select(audit.c.id).order_by(audit.c.id))).all())
    assert ids == [1, 2]
    assert await _log_rows(feed) == 1  # the second transaction logged nothing


async def test_a_row_changed_by_a_later_before_flush_listener_is_still_captured(
    feed: Feed,
) -> None:
    async with feed.db.writer() as s:
        s.add_all([Folder(id=1, org_id=1), Folder(id=2, org_id=1)])
        s.add(Item(id=1, org_id=1, folder_id=1))
    moved: list[int] = []

    def move_item(session: Any, _context: Any, _instances: Any) -> None:
        for obj in list(session.dirty):
            if isinstance(obj, Folder) and not moved:
                item = session.get(Item, 1)
                item.folder_id = 2  # changed after the write path read its rows
                moved.append(1)

    event.listen(feed.db.session_class, "before_flush", move_item)
    try:
        async with feed.db.writer() as s:
            folder = await s.get(Folder, 1)
            assert folder is not None
            folder.name = "renamed"
    finally:
        event.remove(feed.db.session_class, "before_flush", move_item)
    (item,) = [c for c in feed.published[-1].changes if c.table == "items"]
    assert item.scopes["folder_id"] == {"1", "2"}
