"""What lockstep's write path costs a write, by kind: insert, update, delete of one row.

Each kind is one ORM write of one casebook transaction row in its own ``writer()``
transaction, four ways, in interleaved rounds of one run (noise hits every variant alike):

* ``plain``          the Database alone (no observer: the write path is not installed)
* ``feed``           the change feed (capture + log row)
* ``feed+rollups``   the feed and casebook's three rollups
* ``feed+rollups+audit``  and the audit trail of the ledger (before/after of each change)

An update is a load, a change of one column the rollups read (the category: the row moves
between groups) and a commit; the write path reads the row it updates by key first (FOR
UPDATE on PostgreSQL). A delete removes a row the same variant inserted. Printed: wall and
CPU microseconds per commit, and each variant as a ratio of ``plain``.

    .venv/bin/python bench/write_path.py [--writes 600] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import select

from casebook.models import Case, Transaction
from casebook.rollups import AGGREGATES
from casebook.seed import CATEGORIES, seed
from casebook.services import MIGRATIONS, tracking
from lockstep import AUDIT_TABLES, Audit, Changes, Database, load_settings, upgrade
from lockstep.testing import PostgresServer

KINDS = ("insert", "update", "delete")


def settings_for(url: str, data_dir: Path) -> Any:
    return load_settings(database_url=url, slow_query_ms=0, data_dir=data_dir, env="test")


async def prepared(url: str, data_dir: Path, transactions: int) -> None:
    db = Database(settings_for(url, data_dir))
    try:
        await upgrade(db, MIGRATIONS)
        async with db.writer_engine.begin() as conn:
            await conn.run_sync(AUDIT_TABLES.ensure)
        await seed(db, transactions=transactions, today=dt.date(2026, 11, 1))
    finally:
        await db.dispose()


def variants(url: str, data_dir: Path) -> dict[str, Database]:
    plain = Database(settings_for(url, data_dir))
    fed = Database(settings_for(url, data_dir))
    Changes(fed, tracking())
    rolled = Database(settings_for(url, data_dir))
    AGGREGATES.install(rolled)
    Changes(rolled, tracking())
    audited = Database(settings_for(url, data_dir))
    AGGREGATES.install(audited)
    Changes(audited, tracking())
    Audit([Transaction.__table__], chain_column="organization_id").install(audited)
    return {"plain": plain, "feed": fed, "feed+rollups": rolled, "feed+rollups+audit": audited}


async def bench(url: str, data_dir: Path, writes: int) -> dict[str, dict[str, float]]:
    dbs = variants(url, data_dir)
    rng = random.Random(5)
    async with dbs["plain"].reader() as session:
        cases = [(c.id, c.organization_id) for c in (await session.scalars(select(Case))).all()]
    mine: dict[str, list[int]] = {name: [] for name in dbs}  # rows each variant inserted

    def new_row() -> Transaction:
        case_id, org = rng.choice(cases)
        return Transaction(
            organization_id=org,
            case_id=case_id,
            posted_on=dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 300)),
            amount_cents=rng.randint(100, 100_000),
            currency="EUR",
            direction=rng.choice(["debit", "credit"]),
            category=rng.choice(CATEGORIES),
        )

    async def insert(name: str, db: Database) -> None:
        row = new_row()
        async with db.writer() as session:
            session.add(row)
        mine[name].append(row.id)

    async def update(name: str, db: Database) -> None:
        async with db.writer() as session:
            row = await session.get(Transaction, rng.choice(mine[name]))
            assert row is not None
            row.category = rng.choice(CATEGORIES)

    async def delete(name: str, db: Database) -> None:
        async with db.writer() as session:
            row = await session.get(Transaction, mine[name].pop())
            await session.delete(row)

    steps: dict[str, Callable[[str, Database], Awaitable[None]]] = {
        "insert": insert,
        "update": update,
        "delete": delete,
    }
    wall = {kind: dict.fromkeys(dbs, 0.0) for kind in KINDS}
    cpu = {kind: dict.fromkeys(dbs, 0.0) for kind in KINDS}
    rounds = 6
    try:
        for name, db in dbs.items():  # warm up: connections, statement caches
            for kind in KINDS:
                for _ in range(20):
                    await steps[kind](name, db)
        for _ in range(rounds):
            for kind in KINDS:
                for name, db in dbs.items():
                    started, started_cpu = time.perf_counter(), time.process_time()
                    for _ in range(writes // rounds):
                        await steps[kind](name, db)
                    wall[kind][name] += time.perf_counter() - started
                    cpu[kind][name] += time.process_time() - started_cpu
    finally:
        for db in dbs.values():
            await db.dispose()
    n = (writes // rounds) * rounds
    return {
        kind: {
            **{name: total / n for name, total in wall[kind].items()},
            **{f"cpu:{name}": total / n for name, total in cpu[kind].items()},
        }
        for kind in KINDS
    }


def report(label: str, results: dict[str, dict[str, float]]) -> list[str]:
    lines = [f"== {label}: one row per commit; us per commit (x plain), wall | CPU"]
    for kind, figures in results.items():
        cells = []
        for name in ("plain", "feed", "feed+rollups", "feed+rollups+audit"):
            wall, cpu = figures[name], figures[f"cpu:{name}"]
            cells.append(
                f"{name} {wall * 1e6:5.0f} ({wall / figures['plain']:.2f}x) | "
                f"{cpu * 1e6:5.0f} ({cpu / figures['cpu:plain']:.2f}x)"
            )
        lines.append(f"{kind:7s} " + "; ".join(cells))
    return lines


async def main_async(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-write-")))
        url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        await prepared(url, work, args.transactions)
        out += report("SQLite", await bench(url, work, args.writes))
        print("\n".join(out), flush=True)
        if args.postgres:
            server = stack.enter_context(PostgresServer())
            pg_url = server.create_database("bench_write_path")
            await prepared(pg_url, work, args.transactions)
            out += report("PostgreSQL", await bench(pg_url, work, args.writes))
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=20_000)
    parser.add_argument("--writes", type=int, default=600, help="commits per kind and variant")
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument("--time-limit", type=float, default=600.0)
    args = parser.parse_args()
    try:
        lines = asyncio.run(asyncio.wait_for(main_async(args), args.time_limit))
    except TimeoutError:
        print(f"stopped: over the {args.time_limit:.0f}s time limit")
        return 1
    print("\n".join(["", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
