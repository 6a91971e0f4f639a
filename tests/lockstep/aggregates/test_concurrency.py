"""Concurrent writers on PostgreSQL: rollups stay exact and writers never deadlock.

Interleavings are forced with events (statement hooks that await them), never with sleeps.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, select, text, update
from sqlalchemy.util import await_only

from lockstep.db import Database

from .conftest import BY_MONTH, Entry, Ledger, make_ledger

role: contextvars.ContextVar[str] = contextvars.ContextVar("role", default="")
KINDS = "abcdefgh"


def on_statement(db: Database, when: str, hook: Callable[[str], None]) -> Callable[[], None]:
    """Call ``hook(sql)`` before/after every statement on the writer engine; returns remover."""

    def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        hook(statement)

    target = db.writer_engine.sync_engine
    name = "before_cursor_execute" if when == "before" else "after_cursor_execute"
    event.listen(target, name, listener)
    return lambda: event.remove(target, name, listener)


def is_upsert(sql: str, rollup: str = "ENTRIES_BY_") -> bool:
    """A statement upserting into a rollup table (rollups are written in name order:
    by_account first; a writer that only adds rows upserts into all of them at once)."""
    return f"INSERT INTO {rollup}" in sql.upper()


async def test_writers_touching_the_same_groups_in_opposite_orders_do_not_deadlock(
    postgres_url: str, make_database: Callable[..., Database]
) -> None:
    ledger = await make_ledger(make_database(postgres_url, db_pool_size=8))
    writers = 6
    next_id = iter(range(1, 1_000_000))
    mine: dict[int, list[int]] = {w: [] for w in range(writers)}  # rows each writer wrote
    for round_no in range(3):
        flushed = 0
        all_flushed = asyncio.Event()

        async def write(writer: int, round_no: int, all_flushed: asyncio.Event) -> None:
            nonlocal flushed
            rng = random.Random(round_no * 100 + writer)
            kinds = list(KINDS)
            rng.shuffle(kinds)  # every writer inserts into the groups in its own order
            async with ledger.db.writer() as s:
                if mine[writer]:
                    # delete own older rows: removing extremes forces group recomputes
                    for row_id in mine[writer][:2]:
                        await s.delete(await s.get(Entry, row_id))
                    del mine[writer][:2]
                    await s.flush()
                for kind in kinds:
                    row_id = next(next_id)
                    mine[writer].append(row_id)
                    s.add(
                        Entry(
                            id=row_id,
                            org_id=1,
                            account_id=1,
                            kind=kind,
                            day=dt.date(2026, 1, 1),
                            amount=rng.randint(1, 100),
                        )
                    )
                    await s.flush()
                flushed += 1
                if flushed == writers:
                    all_flushed.set()
                await all_flushed.wait()  # every commit starts together, all locks contended

        async with asyncio.timeout(60):
            await asyncio.gather(*(write(w, round_no, all_flushed) for w in range(writers)))
    await ledger.assert_consistent()


async def test_recompute_waits_for_a_concurrent_writer_of_the_same_group(
    postgres_url: str, make_database: Callable[..., Database]
) -> None:
    """T2 holds group G's rollup row (mid-commit) while T1, which deleted G's only minimum
    row, commits: T1's recompute must include T2's row, which commits first."""
    ledger: Ledger = await make_ledger(make_database(postgres_url))
    async with ledger.db.writer() as s:
        s.add_all(
            [
                Entry(id=1, org_id=1, account_id=1, kind="a", day=dt.date(2026, 1, 1), amount=1),
                Entry(id=2, org_id=1, account_id=1, kind="a", day=dt.date(2026, 1, 2), amount=5),
            ]
        )
    t2_holds_lock = asyncio.Event()
    t1_upserting = asyncio.Event()

    def before(sql: str) -> None:
        if role.get() == "t1" and is_upsert(sql):
            t1_upserting.set()

    def after(sql: str) -> None:
        if role.get() == "t2" and is_upsert(sql, BY_MONTH.name.upper()):
            t2_holds_lock.set()
            await_only(t1_upserting.wait())  # keep G locked until T1 is at its upserts

    remove = [on_statement(ledger.db, "before", before), on_statement(ledger.db, "after", after)]

    async def t1() -> None:
        role.set("t1")
        async with ledger.db.writer() as s:
            await s.delete(await s.get(Entry, 1))  # the minimum: G must be recomputed
            await s.flush()
            await t2_holds_lock.wait()

    async def t2() -> None:
        role.set("t2")
        async with ledger.db.writer() as s:
            s.add(Entry(id=3, org_id=1, account_id=1, kind="a", day=dt.date(2026, 1, 3), amount=3))

    try:
        async with asyncio.timeout(30):
            await asyncio.gather(t1(), t2())
    finally:
        for undo in remove:
            undo()
    async with ledger.db.reader() as s:
        row = (await s.execute(select(BY_MONTH.table))).one()._mapping
    assert (row["row_count"], row["smallest"], row["largest"]) == (2, 3, 5)
    await ledger.assert_consistent()


async def test_two_writers_creating_the_same_new_group(
    postgres_url: str, make_database: Callable[..., Database]
) -> None:
    ledger = await make_ledger(make_database(postgres_url))
    both_flushed = asyncio.Event()
    flushed = 0

    async def write(i: int) -> None:
        nonlocal flushed
        async with ledger.db.writer() as s:
            s.add(
                Entry(id=i, org_id=2, account_id=2, kind="new", day=dt.date(2026, 5, 1), amount=i)
            )
            await s.flush()
            flushed += 1
            if flushed == 2:
                both_flushed.set()
            await both_flushed.wait()

    async with asyncio.timeout(30):
        await asyncio.gather(write(1), write(2))
    await ledger.assert_consistent()


GATE = """
CREATE FUNCTION gate() RETURNS trigger AS $$
BEGIN
  -- every rollup row a writer locks waits here until the test opens the gate
  PERFORM pg_advisory_lock_shared(4242);
  PERFORM pg_advisory_unlock_shared(4242);
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER gate BEFORE UPDATE ON entries_by_month FOR EACH ROW EXECUTE FUNCTION gate();
"""


async def test_lock_order_is_shared_by_all_writers(
    postgres_url: str, make_database: Callable[..., Database]
) -> None:
    """Two writers each hold their first rollup row while a gate (an advisory lock taken in
    a trigger) stops them; when it opens, any difference in lock order would be a deadlock.
    Writer 1 inserts into groups a..h, writer 2 into h..a."""
    ledger = await make_ledger(make_database(postgres_url))
    async with ledger.db.writer() as s:
        for i, kind in enumerate(KINDS):
            s.add(
                Entry(
                    id=100 + i,
                    org_id=1,
                    account_id=1,
                    kind=kind,
                    day=dt.date(2026, 1, 1),
                    amount=50,
                )
            )
    async with ledger.db.writer_engine.begin() as conn:
        for statement in GATE.split(";\nCREATE TRIGGER"):
            sql = (
                statement
                if statement.lstrip().startswith("CREATE FUNCTION")
                else "CREATE TRIGGER" + statement
            )
            await conn.execute(text(sql))
    started: dict[str, asyncio.Event] = {"w1": asyncio.Event(), "w2": asyncio.Event()}

    def before(sql: str) -> None:
        if role.get() in started and is_upsert(sql):
            started[role.get()].set()

    remove = on_statement(ledger.db, "before", before)
    async with ledger.db.writer_engine.connect() as gatekeeper:
        await gatekeeper.execute(text("SELECT pg_advisory_lock(4242)"))

        async def write(name: str, kinds: str) -> None:
            role.set(name)
            async with ledger.db.writer() as s:
                for i, kind in enumerate(kinds):
                    # own accounts: the writers share only the by-month groups
                    account = 1 if name == "w1" else 3
                    s.add(
                        Entry(
                            id=account * 1000 + i,
                            org_id=1,
                            account_id=account,
                            kind=kind,
                            day=dt.date(2026, 1, 1),
                            amount=i,
                        )
                    )

        try:
            async with asyncio.timeout(30):
                writers = asyncio.gather(write("w1", KINDS), write("w2", KINDS[::-1]))
                await started["w1"].wait()
                await started["w2"].wait()
                await gatekeeper.execute(text("SELECT pg_advisory_unlock(4242)"))
                await writers
        finally:
            remove()
    await ledger.assert_consistent()


async def test_a_row_image_cannot_go_stale_between_the_read_and_the_write(
    postgres_url: str, make_database: Callable[..., Database]
) -> None:
    """T1 reads the row it updates (its before-image) FOR UPDATE: T2, updating the same row
    right after that read, must wait for T1 — here until its lock timeout — instead of
    changing the row under T1's image (which would make T1's deltas wrong)."""
    ledger = await make_ledger(make_database(postgres_url))
    async with ledger.db.writer() as s:
        s.add(Entry(id=1, org_id=1, account_id=1, kind="a", day=dt.date(2026, 1, 1), amount=5))
    outcome: list[str] = []

    async def t2() -> None:
        role.set("t2")
        try:
            async with ledger.db.writer() as s:
                await s.execute(text("SET LOCAL lock_timeout = '200ms'"))
                await s.execute(update(Entry).where(Entry.id == 1).values(amount=500))
        except Exception as exc:  # the lock timeout: T1 holds the row
            outcome.append("lock timeout" if "lock timeout" in str(exc) else repr(exc))
        else:
            outcome.append("committed")

    def before(sql: str) -> None:
        if role.get() == "t1" and sql.upper().startswith("UPDATE ENTRIES") and not outcome:
            await_only(t2())  # T1 has read the row (its image); its UPDATE has not run yet

    remove = on_statement(ledger.db, "before", before)
    try:
        role.set("t1")
        async with ledger.db.writer() as s:
            found = await s.get(Entry, 1)
            assert found is not None
            found.kind = "b"
    finally:
        remove()
    assert outcome == ["lock timeout"], outcome
    await ledger.assert_consistent()
