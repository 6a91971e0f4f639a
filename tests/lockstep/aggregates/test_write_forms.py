"""Every way a write can happen, one table: the change feed sees it and the rollups stay
equal to their GROUP BY, on both backends (issue #12: one write path, no drift).

Each form runs after the same seed rows, in its own transaction; the test asserts the
transaction's change set names the source table (or, for a rolled-back savepoint, names
nothing of what it undid) and that ``verify`` finds no drift.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import delete, insert, literal_column, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.db import bulk_insert

from .conftest import Account, Entry, Ledger

D = dt.date
Form = Callable[[AsyncSession], Awaitable[object]]


def row(i: int, **kw: object) -> dict[str, object]:
    values: dict[str, object] = {
        "id": i,
        "org_id": 1,
        "account_id": 1 + i % 3,
        "day": D(2026, 1 + i % 3, 5),
        "kind": "ab"[i % 2],
        "amount": i * 10,
        "hidden": i % 5 == 0,
        "note": "",
    }
    values.update(kw)
    return values


async def orm_add(s: AsyncSession) -> None:
    s.add(Entry(**row(100)))


async def orm_update(s: AsyncSession) -> None:
    found = await s.get(Entry, 1)
    assert found is not None
    found.amount, found.kind, found.hidden = 999, "z", False


async def orm_delete(s: AsyncSession) -> None:
    await s.delete(await s.get(Entry, 2))


async def core_insert_returning(s: AsyncSession) -> None:
    (new_id,) = (await s.execute(insert(Entry).values(**row(101)).returning(Entry.id))).one()
    assert new_id == 101


async def core_executemany(s: AsyncSession) -> None:
    await s.execute(insert(Entry), [row(i) for i in range(200, 230)])


async def core_update_where(s: AsyncSession) -> None:
    await s.execute(update(Entry).where(Entry.amount > 40).values(kind="moved"))


async def core_update_returning(s: AsyncSession) -> None:
    result = await s.execute(
        update(Entry.__table__).where(Entry.id == 3).values(amount=7).returning(Entry.id)
    )
    assert result.scalars().all() == [3]


async def core_update_cte(s: AsyncSession) -> None:
    big = select(Entry.id).where(Entry.amount > 30).cte("big")
    await s.execute(
        update(Entry).where(Entry.id.in_(select(big.c.id))).values(amount=Entry.amount + 1)
    )


async def core_delete_where_returning(s: AsyncSession) -> None:
    await s.execute(delete(Entry).where(Entry.kind == "a").returning(Entry.id))


async def orm_bulk_update_by_key(s: AsyncSession) -> None:
    await s.execute(
        update(Entry), [{"id": 1, "kind": "k", "amount": 5}, {"id": 4, "day": D(2025, 1, 1)}]
    )


async def lockstep_bulk_insert(s: AsyncSession) -> None:
    await bulk_insert(s, Entry.__table__, [row(i) for i in range(300, 340)])


async def legacy_bulk_methods(s: AsyncSession) -> None:
    await s.run_sync(lambda sync: sync.bulk_insert_mappings(Entry, [row(400), row(401)]))
    await s.run_sync(lambda sync: sync.bulk_update_mappings(Entry, [{"id": 1, "amount": 3}]))
    existing = await s.get(Entry, 4)
    assert existing is not None
    existing.amount = 44
    await s.run_sync(lambda sync: sync.bulk_save_objects([existing, Entry(**row(402))]))


async def text_dml_with_cte(s: AsyncSession) -> None:
    await s.execute(text("WITH v AS (SELECT 1) UPDATE entries SET amount = amount + 1"))


async def text_insert(s: AsyncSession) -> None:
    await s.execute(
        text(
            "INSERT INTO entries (id, org_id, account_id, day, kind, amount, hidden, note) "
            "VALUES (500, 1, 1, '2026-02-02', 'q', 12, false, '')"
        )
    )


async def upsert(s: AsyncSession) -> None:
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(Entry).values(**row(1, amount=1234))
    await s.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"amount": 1234}))


async def insert_select(s: AsyncSession) -> None:
    columns = ["id", "org_id", "account_id", "day", "kind", "amount", "hidden", "note"]
    copied = select(
        Entry.id + 1000,
        Entry.org_id,
        Entry.account_id,
        Entry.day,
        literal_column("'copy'"),
        Entry.amount,
        Entry.hidden,
        Entry.note,
    )
    await s.execute(insert(Entry).from_select(columns, copied))


async def savepoint_rollback(s: AsyncSession) -> None:
    s.add(Entry(**row(600)))
    nested = await s.begin_nested()
    s.add(Entry(**row(601, amount=100_000)))
    await s.execute(update(Entry).where(Entry.id == 1).values(amount=77_777))
    await s.flush()
    await nested.rollback()


async def cascade_orm(s: AsyncSession) -> None:
    await s.delete(await s.get(Account, 1))  # the database deletes its entries


async def cascade_core(s: AsyncSession) -> None:
    await s.execute(delete(Account).where(Account.id == 2))


FORMS: list[Form] = [
    orm_add,
    orm_update,
    orm_delete,
    core_insert_returning,
    core_executemany,
    core_update_where,
    core_update_returning,
    core_update_cte,
    core_delete_where_returning,
    orm_bulk_update_by_key,
    lockstep_bulk_insert,
    legacy_bulk_methods,
    text_dml_with_cte,
    text_insert,
    upsert,
    insert_select,
    savepoint_rollback,
    cascade_orm,
    cascade_core,
]


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
async def test_every_write_form_is_seen_by_the_feed_and_keeps_rollups_exact(
    ledger: Ledger, form: Form
) -> None:
    async with ledger.db.writer() as s:
        await s.execute(insert(Entry), [row(i) for i in range(1, 13)])
    await ledger.assert_consistent()
    seen = len(ledger.published)
    async with ledger.db.writer() as s:
        await form(s)
    await ledger.assert_consistent()
    assert len(ledger.published) == seen + 1, "the feed published nothing for the write"
    tables = ledger.published[-1].tables
    assert "entries" in tables
    if form is savepoint_rollback:
        keys = {c.key for c in ledger.published[-1].changes if c.table == "entries"}
        assert keys == {("600",)}  # what the savepoint undid is not in the change set
    async with ledger.db.reader() as s:
        assert await s.scalar(select(Entry.amount).where(Entry.id == 601)) is None
