"""Property: any sequence of writes, savepoints and rollbacks leaves every rollup equal to its
GROUP BY (checked after every transaction), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.db import Database, bulk_insert

from .conftest import BY_ACCOUNT, BY_MONTH, Account, Entry, Ledger

DAYS = [dt.date(2026, 1, 3), dt.date(2026, 1, 20), dt.date(2026, 2, 1), dt.date(2026, 3, 31)]

rows = st.fixed_dictionaries(
    {
        "org_id": st.integers(1, 2),
        "account_id": st.integers(1, 4),
        "day": st.sampled_from(DAYS),
        "kind": st.sampled_from(["a", "b"]),
        "amount": st.integers(0, 4),  # few values: many ties at the MIN/MAX
        "hidden": st.booleans(),
    }
)
pick = st.integers(0, 50)
leaf_ops = st.one_of(
    st.tuples(st.just("add"), rows),
    st.tuples(st.just("bulk"), st.lists(rows, min_size=1, max_size=4)),
    st.tuples(st.just("fast_bulk"), st.lists(rows, min_size=1, max_size=4)),
    st.tuples(
        st.just("set"), pick, st.sampled_from(["kind", "amount", "day", "hidden", "org_id"]), rows
    ),
    st.tuples(st.just("del"), pick),
    st.tuples(st.just("flush")),
    st.tuples(st.just("add_where"), st.sampled_from(["a", "b"]), st.integers(-2, 2)),
    st.tuples(st.just("move_where"), st.integers(0, 4), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.just("del_where"), st.integers(0, 4)),
    st.tuples(st.just("set_by_key"), pick, st.integers(0, 4), st.sampled_from(["a", "b"])),
    st.tuples(st.just("del_account"), st.integers(1, 4)),
)
ops = st.one_of(
    leaf_ops,
    st.tuples(st.just("savepoint"), st.lists(leaf_ops, max_size=4), st.booleans()),
)
transactions = st.lists(
    st.tuples(st.lists(ops, min_size=1, max_size=6), st.booleans()), min_size=1, max_size=5
)


class Abort(Exception):
    pass


async def _ids(s: AsyncSession) -> list[int]:
    return list((await s.scalars(select(Entry.id).order_by(Entry.id))).all())


async def run_op(s: AsyncSession, op: tuple[Any, ...], next_id: list[int]) -> None:
    kind = op[0]
    if kind == "add":
        next_id[0] += 1
        s.add(Entry(id=next_id[0], **op[1]))
    elif kind in ("bulk", "fast_bulk"):
        batch = []
        for row in op[1]:
            next_id[0] += 1
            batch.append({"id": next_id[0], **row})
        if kind == "bulk":
            await s.execute(insert(Entry), batch)
        else:
            await bulk_insert(s, Entry.__table__, batch)
    elif kind in ("set", "del", "set_by_key"):
        ids = await _ids(s)
        if not ids:
            return
        target = ids[op[1] % len(ids)]
        if kind == "set_by_key":
            await s.execute(update(Entry), [{"id": target, "amount": op[2], "kind": op[3]}])
            return
        obj = await s.get(Entry, target)
        assert obj is not None
        if kind == "del":
            await s.delete(obj)
        else:
            setattr(obj, op[2], op[3][op[2]])
    elif kind == "flush":
        await s.flush()
    elif kind == "add_where":
        stmt = update(Entry).where(Entry.kind == op[1]).values(amount=Entry.amount + op[2])
        await s.execute(stmt.execution_options(synchronize_session=False))
        s.expire_all()
    elif kind == "move_where":
        stmt = update(Entry).where(Entry.amount < op[1]).values(kind=op[2])
        await s.execute(stmt.execution_options(synchronize_session=False))
        s.expire_all()
    elif kind == "del_where":
        stmt = delete(Entry).where(Entry.amount == op[1])
        await s.execute(stmt.execution_options(synchronize_session=False))
        s.expire_all()
    elif kind == "del_account":
        await s.execute(delete(Account).where(Account.id == op[1]))
        s.expire_all()
        s.add(Account(id=op[1], org_id=1))
        await s.flush()
    elif kind == "savepoint":
        try:
            async with s.begin_nested():
                for inner in op[1]:
                    await run_op(s, inner, next_id)
                await s.flush()
                if op[2]:
                    raise Abort
        except Abort:
            s.expire_all()


async def reset(db: Database) -> None:
    """Empty every table behind lockstep's back (raw connection: not maintained, not logged)."""
    async with db.writer_engine.begin() as conn:
        for table in (Entry.__table__, BY_MONTH.table, BY_ACCOUNT.table):
            await conn.execute(delete(table))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=transactions)
async def test_any_write_sequence_keeps_rollups_equal_to_group_by(
    ledger: Ledger, script: list[tuple[list[tuple[Any, ...]], bool]]
) -> None:
    await reset(ledger.db)
    next_id = [0]
    for txn_ops, commit in script:
        try:
            async with ledger.db.writer() as s:
                for op in txn_ops:
                    await run_op(s, op, next_id)
                if not commit:
                    raise Abort
        except Abort:
            pass
        await ledger.assert_consistent()
