"""Every write path keeps the rollups equal to their GROUP BY, in the writer's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import delete, event, insert, select, text, update

from lockstep.aggregates import ROW_COUNT
from lockstep.db import Database, bulk_insert
from lockstep.exceptions import ConfigurationError

from .conftest import AGGREGATES, BY_ACCOUNT, BY_MONTH, Account, Entry, Ledger, make_ledger

D = dt.date
JAN_5 = D(2026, 1, 5)


def entry(i: int, *, kind: str = "a", amount: int = 10, day: D = JAN_5, **kw: object) -> Entry:
    values: dict[str, object] = {"org_id": 1, "account_id": 1, "hidden": False}
    values.update(kw)
    return Entry(id=i, kind=kind, amount=amount, day=day, **values)


async def rollup_rows(ledger: Ledger, rollup: object) -> list[dict[str, object]]:
    table = rollup.table  # type: ignore[attr-defined]
    async with ledger.db.reader() as session:
        rows = (await session.execute(select(table).order_by(*table.primary_key.columns))).all()
    return [dict(r._mapping) for r in rows]


async def test_orm_insert_update_move_and_delete(ledger: Ledger) -> None:
    async with ledger.db.writer() as s:
        s.add_all([entry(1, amount=5), entry(2, amount=7), entry(3, kind="b", amount=1)])
    rows = await rollup_rows(ledger, BY_MONTH)
    assert [(r["kind"], r[ROW_COUNT], r["total"], r["smallest"], r["largest"]) for r in rows] == [
        ("a", 2, 12, 5, 7),
        ("b", 1, 1, 1, 1),
    ]
    await ledger.assert_consistent()

    async with ledger.db.writer() as s:
        moved = await s.get(Entry, 2)
        assert moved is not None
        moved.kind = "b"  # moves between groups
        moved.day = D(2026, 2, 1)  # and months
    await ledger.assert_consistent()

    async with ledger.db.writer() as s:
        await s.delete(await s.get(Entry, 1))
    rows = await rollup_rows(ledger, BY_MONTH)
    assert {(r["month"], r["kind"]) for r in rows} == {("2026-01", "b"), ("2026-02", "b")}
    await ledger.assert_consistent()


async def test_filter_moves_rows_in_and_out(ledger: Ledger) -> None:
    async with ledger.db.writer() as s:
        s.add_all([entry(1), entry(2, hidden=True)])
    assert (await rollup_rows(ledger, BY_MONTH))[0][ROW_COUNT] == 1
    async with ledger.db.writer() as s:
        e = await s.get(Entry, 2)
        assert e is not None
        e.hidden = False
    assert (await rollup_rows(ledger, BY_MONTH))[0][ROW_COUNT] == 2
    await ledger.assert_consistent()


async def test_deleting_the_extreme_recomputes_only_when_the_last_one_goes(ledger: Ledger) -> None:
    async with ledger.db.writer() as s:
        s.add_all([entry(1, amount=1), entry(2, amount=1), entry(3, amount=50), entry(4, amount=9)])
    row = (await rollup_rows(ledger, BY_MONTH))[0]
    assert (row["smallest"], row["smallest_n"], row["largest"], row["largest_n"]) == (1, 2, 50, 1)
    async with ledger.db.writer() as s:
        await s.delete(await s.get(Entry, 1))
    row = (await rollup_rows(ledger, BY_MONTH))[0]
    assert (row["smallest"], row["smallest_n"]) == (1, 1)
    async with ledger.db.writer() as s:
        await s.delete(await s.get(Entry, 2))
        await s.delete(await s.get(Entry, 3))
    row = (await rollup_rows(ledger, BY_MONTH))[0]
    assert (row["smallest"], row["smallest_n"], row["largest"], row["largest_n"]) == (9, 1, 9, 1)
    await ledger.assert_consistent()


async def test_bulk_insert_paths(ledger: Ledger) -> None:
    rows = [
        {
            "id": i,
            "org_id": 1 + i % 2,
            "account_id": 1 + i % 4,
            "day": D(2026, 1 + i % 3, 1),
            "kind": "abc"[i % 3],
            "amount": i,
            "hidden": i % 7 == 0,
        }
        for i in range(1, 4201)
    ]
    async with ledger.db.writer() as s:
        await s.execute(insert(Entry), rows[:1000])
        await s.execute(insert(Entry.__table__), rows[1000:2000])  # Core, column keys
        await s.execute(insert(Entry).values(rows[2000:2010]))  # multi-VALUES
        await s.execute(insert(Entry).values(**rows[2010]))
        # hidden omitted: its scalar default (False) is what the database stores
        await s.execute(
            insert(Entry), [{k: v for k, v in r.items() if k != "hidden"} for r in rows[2011:2500]]
        )
        # the bulk path, over and under the feed's coalescing threshold, defaults filled in
        await bulk_insert(s, Entry.__table__, rows[2500:2510])
        await bulk_insert(
            s, Entry.__table__, [{k: v for k, v in r.items() if k != "hidden"} for r in rows[2510:]]
        )
    await ledger.assert_consistent()
    counted = await rollup_rows(ledger, BY_ACCOUNT)
    assert sum(r[ROW_COUNT] for r in counted) == 4200


async def test_bulk_update_and_delete_with_where(ledger: Ledger) -> None:
    async with ledger.db.writer() as s:
        s.add_all(
            [entry(i, amount=i, kind="ab"[i % 2], account_id=1 + i % 3) for i in range(1, 40)]
        )
    async with ledger.db.writer() as s:
        await s.execute(update(Entry).where(Entry.amount > 30).values(amount=Entry.amount * 2))
        await s.execute(update(Entry).where(Entry.kind == "a").values(kind="c"))  # moves groups
        await s.execute(delete(Entry).where(Entry.amount < 5))
        await s.execute(update(Entry.__table__).where(Entry.id == 20).values(day=D(2025, 12, 1)))
    await ledger.assert_consistent()
    async with ledger.db.writer() as s:  # ORM bulk UPDATE by primary key
        await s.execute(
            update(Entry), [{"id": 10, "kind": "z", "amount": 1000}, {"id": 11, "hidden": True}]
        )
    await ledger.assert_consistent()
    async with ledger.db.writer() as s:  # no WHERE: every group recomputed
        await s.execute(delete(Entry))
    assert await rollup_rows(ledger, BY_MONTH) == []
    await ledger.assert_consistent()


async def test_writes_whose_groups_cannot_be_known_recompute_every_group(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    async with ledger.db.writer() as s:
        s.add_all([entry(1), entry(2, kind="b", amount=5)])
    async with ledger.db.writer() as s:  # a group key set to a SQL expression
        await s.execute(update(Entry).where(Entry.id == 1).values(kind=Entry.note))
    await ledger.assert_consistent()
    async with ledger.db.writer() as s:  # text() DML, CTE-prefixed
        await s.execute(text("WITH v AS (SELECT 1) UPDATE entries SET amount = 3"))
    await ledger.assert_consistent()
    async with ledger.db.writer() as s:  # INSERT ... SELECT
        await s.execute(
            insert(Entry).from_select(
                ["id", "org_id", "account_id", "day", "kind", "amount", "hidden", "note"],
                select(
                    Entry.id + 100,
                    Entry.org_id,
                    Entry.account_id,
                    Entry.day,
                    Entry.kind,
                    Entry.amount,
                    Entry.hidden,
                    Entry.note,
                ),
            )
        )
    await ledger.assert_consistent()
    assert sum(r[ROW_COUNT] for r in await rollup_rows(ledger, BY_ACCOUNT)) == 4


async def test_cascading_delete_of_a_parent(ledger: Ledger) -> None:
    async with ledger.db.writer() as s:
        s.add_all(
            [entry(i, account_id=1 + i % 4, org_id=1 + (1 + i % 4) % 2) for i in range(1, 21)]
        )
    async with ledger.db.writer() as s:
        await s.delete(await s.get(Account, 1))  # the database deletes its entries
        await s.execute(delete(Account).where(Account.id == 2))
    await ledger.assert_consistent()
    assert {r["account_id"] for r in await rollup_rows(ledger, BY_ACCOUNT)} == {3, 4}


async def test_rollback_and_savepoint_rollback_leave_rollups_untouched(ledger: Ledger) -> None:
    async with ledger.db.writer() as s:
        s.add(entry(1, amount=3))
    before = await rollup_rows(ledger, BY_MONTH)

    async def failing_write() -> None:
        async with ledger.db.writer() as s:
            s.add(entry(2, amount=100))
            await s.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing_write()
    assert await rollup_rows(ledger, BY_MONTH) == before

    async with ledger.db.writer() as s:
        s.add(entry(3, amount=4))
        try:
            async with s.begin_nested():
                s.add(entry(4, amount=1000))
                await s.execute(
                    insert(Entry),
                    [
                        {
                            "id": 5,
                            "org_id": 1,
                            "account_id": 1,
                            "day": D(2026, 1, 1),
                            "kind": "a",
                            "amount": 1,
                        }
                    ],
                )
                await s.flush()
                raise RuntimeError("inner")
        except RuntimeError:
            pass
    rows = await rollup_rows(ledger, BY_MONTH)
    assert (rows[0][ROW_COUNT], rows[0]["total"], rows[0]["largest"]) == (2, 7, 4)
    await ledger.assert_consistent()


async def test_rollup_rows_are_in_the_same_change_set(ledger: Ledger) -> None:
    async with ledger.db.writer() as s:
        s.add(entry(1))
    tables = ledger.published[-1].tables
    assert {"entries", "entries_by_month", "entries_by_account"} <= tables
    change = next(c for c in ledger.published[-1].changes if c.table == "entries_by_month")
    assert change.key == ("1", "2026-01", "a")
    assert change.scopes["org_id"] == {"1"}


async def test_legacy_bulk_session_methods(ledger: Ledger) -> None:
    base = {"org_id": 1, "account_id": 2, "day": D(2026, 4, 1), "hidden": False}
    async with ledger.db.writer() as s:
        await s.run_sync(
            lambda sync: sync.bulk_insert_mappings(
                Entry, [{"id": i, "kind": "k", "amount": i, **base} for i in range(1, 6)]
            )
        )
        await s.run_sync(lambda sync: sync.bulk_save_objects([entry(9, amount=99)]))
    await ledger.assert_consistent()
    async with ledger.db.writer() as s:
        await s.run_sync(
            lambda sync: sync.bulk_update_mappings(Entry, [{"id": 1, "kind": "m", "amount": 50}])
        )
        old = await s.get(Entry, 9)
        assert old is not None
        old.amount = 1
        await s.run_sync(lambda sync: sync.bulk_save_objects([old]))
    await ledger.assert_consistent()


async def test_on_postgres_the_upserts_ride_in_the_change_log_statement(
    postgres_url: str, make_database: Callable[..., Database]
) -> None:
    """With the feed installed, a write that only adds rows costs no statement of its own
    for the rollups; without it, one statement for all of them."""
    fed = await make_ledger(make_database(postgres_url))
    statements: list[str] = []
    event.listen(
        fed.db.writer_engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, *_: statements.append(sql.upper()),
    )
    async with fed.db.writer() as s:
        s.add(Entry(id=1, org_id=1, account_id=1, kind="a", day=D(2026, 1, 5), amount=7))
    into_rollups = [sql for sql in statements if "INSERT INTO ENTRIES_BY_" in sql]
    assert len(into_rollups) == 1
    assert "INSERT INTO LOCKSTEP_CHANGES" in into_rollups[0]
    await fed.assert_consistent()
    rollup_changes = {c.table for c in fed.published[-1].changes}
    assert {BY_ACCOUNT.name, BY_MONTH.name} <= rollup_changes

    alone = make_database(postgres_url)  # the same tables, rollups without the feed
    AGGREGATES.install(alone)
    statements.clear()
    event.listen(
        alone.writer_engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, *_: statements.append(sql.upper()),
    )
    async with alone.writer() as s:
        s.add(Entry(id=2, org_id=1, account_id=1, kind="a", day=D(2026, 1, 6), amount=9))
    (upsert,) = [sql for sql in statements if "INSERT INTO ENTRIES_BY_" in sql]
    assert "LOCKSTEP_CHANGES" not in upsert
    await fed.assert_consistent()


async def test_a_refused_bulk_insert_leaves_nothing_for_the_rollups(ledger: Ledger) -> None:
    """Rows bulk_insert refuses are refused before the rollups count them: a caller that
    catches the error and commits the rest keeps the rollups exact."""
    good = {"org_id": 1, "account_id": 1, "day": D(2026, 2, 1), "kind": "a", "amount": 5}
    async with ledger.db.writer() as s:
        await bulk_insert(s, Entry.__table__, [{"id": 1, **good}])
        ragged = {k: v for k, v in good.items() if k != "amount"}
        with pytest.raises(ConfigurationError, match="a row lacks 'amount'"):
            await bulk_insert(s, Entry.__table__, [{"id": 2, **good}, {"id": 3, **ragged}])
    await ledger.assert_consistent()
    counted = await rollup_rows(ledger, BY_ACCOUNT)
    assert sum(r[ROW_COUNT] for r in counted) == 1
