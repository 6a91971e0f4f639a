"""Bulk inserts larger than MAX_ROWS_PER_TABLE are logged per scope, built without a Change
per row; the result is what coalescing the row-level changes gives."""

from __future__ import annotations

from sqlalchemy import insert

from lockstep.changes.capture import MAX_ROWS_PER_TABLE, coalesce
from lockstep.db import bulk_insert
from lockstep.types import Change

from ..conftest import Feed, Folder, Item


async def test_large_bulk_insert_is_one_scoped_change(feed: Feed) -> None:
    n = MAX_ROWS_PER_TABLE + 500
    async with feed.db.writer() as s:
        await s.execute(insert(Folder), [{"id": i, "org_id": 1} for i in (1, 2)])
        rows = [{"org_id": 1 + i % 3, "folder_id": 1 + i % 2, "title": "t"} for i in range(n)]
        await s.execute(insert(Item), rows)
        s.add(Item(id=n + 10, org_id=9, folder_id=1))  # row-level, merged with the bulk rows
    items = [c for c in feed.published[-1].changes if c.table == "items"]
    assert len(items) == 1
    (change,) = items
    assert (change.op, change.key, change.scopes_complete) == ("insert", None, True)
    assert change.scopes == {"org_id": {"1", "2", "3", "9"}, "folder_id": {"1", "2"}}


async def test_small_batches_after_a_bulk_one_merge_into_it(feed: Feed) -> None:
    n = MAX_ROWS_PER_TABLE + 1
    async with feed.db.writer() as s:
        await s.execute(insert(Folder), [{"id": 1, "org_id": 1}])
        await s.execute(insert(Item), [{"folder_id": 1, "org_id": 5} for _ in range(n - 1)])
        await s.execute(insert(Item), [{"folder_id": 1, "org_id": 5}] * 2)
    (change,) = [c for c in feed.published[-1].changes if c.table == "items"]
    assert change.scopes_complete


def test_forced_coalescing_merges_a_small_table() -> None:
    changes = [Change("t", "insert", key=("1",), scopes={"a": frozenset({"x"})})]
    assert coalesce(changes) == changes
    (merged,) = coalesce(changes, force={"t"})
    assert (merged.key, merged.scopes) == (None, {"a": frozenset({"x"})})


async def test_bulk_insert_is_captured_like_an_executemany(feed: Feed) -> None:
    n = MAX_ROWS_PER_TABLE + 1
    folders = Folder.__table__
    items = Item.__table__
    async with feed.db.writer() as s:
        await bulk_insert(s, folders, [{"id": 1, "org_id": 1}, {"id": 2, "org_id": 2}])
    keyed = {c.key: c for c in feed.published[-1].changes if c.table == "folders"}
    assert set(keyed) == {("1",), ("2",)}  # few rows with their keys: row level
    assert keyed[("2",)].scopes == {"org_id": {"2"}}
    async with feed.db.writer() as s:
        await bulk_insert(s, items, [{"org_id": 3, "folder_id": 1 + i % 2} for i in range(n)])
    (change,) = [c for c in feed.published[-1].changes if c.table == "items"]
    assert (change.op, change.key, change.scopes_complete) == ("insert", None, True)
    assert change.scopes == {"org_id": {"3"}, "folder_id": {"1", "2"}}
