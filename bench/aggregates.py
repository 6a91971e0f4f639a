"""Dashboard rollups and CSV import on a seeded ledger (1M transactions by default).

Three questions, each answered as a ratio against the plain way of doing it, in one run:

1. **Read**: a dashboard (cleared activity of one organization by month x category x
   direction) from the rollup vs the GROUP BY over the transactions it replaces, for the
   all-time view and for one month. Target: >= 100x for the all-time view.
2. **Write**: one transaction inserted and committed through ``Database.writer()`` with the
   change feed and the three casebook rollups maintained, vs a plain insert + commit (and vs
   the change feed alone). Target: <= 1.3x.
3. **Import**: a 150k-row (~10 MB) CSV file through ``casebook.imports`` (streamed from disk,
   validated, change feed + rollups) vs a plain bulk insert of the same rows (csv.DictReader
   and executemany, no feed, no rollups). Target: >= 0.85x the plain throughput and
   >= 50k rows/s on SQLite. Also printed: the driver's floor, the same rows converted up
   front and handed to the driver alone (``sqlite3.executemany``; asyncpg's binary COPY).

The seeded database is kept in ``--cache-dir`` (keyed by size and backend) so reruns skip
the seeding; every measurement runs on a copy. Bounded: ``--time-limit`` seconds in all.

    .venv/bin/python bench/aggregates.py [--transactions 1000000] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, insert, select, text

from casebook.imports import ImportRequest, import_transactions
from casebook.models import Case, Transaction
from casebook.rollups import AGGREGATES, MONTHLY
from casebook.seed import CATEGORIES, COUNTERPARTIES, seed
from casebook.services import MIGRATIONS, tracking
from lockstep import Changes, Database, Spool, load_settings, month, upgrade
from lockstep.testing import PostgresServer

LEDGER: Table = Transaction.metadata.tables["transactions"]
TARGETS = {"read": 100.0, "write": 1.3, "import": 0.85, "rows_per_s": 50_000}


def log(message: str) -> None:
    print(message, flush=True)


def settings_for(url: str, data_dir: Path) -> Any:
    return load_settings(database_url=url, slow_query_ms=0, data_dir=data_dir, env="test")


async def timed(fn: Callable[[], Awaitable[Any]], *, runs: int) -> float:
    """Median seconds of ``runs`` calls (after one warm-up call)."""
    await fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


# -- setup ----------------------------------------------------------------------------------------


async def seeded(url: str, data_dir: Path, transactions: int) -> None:
    db = Database(settings_for(url, data_dir))
    try:
        await upgrade(db, MIGRATIONS)
        started = time.perf_counter()
        await seed(db, transactions=transactions, today=dt.date(2026, 11, 1))
        log(f"seeded {transactions:,} transactions in {time.perf_counter() - started:.1f}s")
        if db.backend == "postgresql":
            async with db.writer_engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE"))
        else:
            async with db.writer_engine.begin() as conn:
                await conn.execute(text("ANALYZE"))
    finally:
        await db.dispose()


async def migrated(url: str, data_dir: Path) -> None:
    db = Database(settings_for(url, data_dir))
    try:
        await upgrade(db, MIGRATIONS)
    finally:
        await db.dispose()


# -- 1. read -----------------------------------------------------------------------------------


async def bench_read(db: Database) -> dict[str, float]:
    t, m = Transaction, MONTHLY.table.c
    month_expr = month("posted_on").sql(LEDGER.c.posted_on)
    group_by_all = (
        select(month_expr, t.category, t.direction, func.count(), func.sum(t.amount_cents))
        .where(t.organization_id == 1, t.flagged.is_(False))
        .group_by(month_expr, t.category, t.direction)
    )
    rollup_all = MONTHLY.summarize("month", "category", "direction").where(m.organization_id == 1)
    first = dt.date(2026, 10, 1)
    group_by_month = (
        select(t.category, t.direction, func.count(), func.sum(t.amount_cents))
        .where(
            t.organization_id == 1,
            t.flagged.is_(False),
            t.posted_on >= first,
            t.posted_on < dt.date(2026, 11, 1),
        )
        .group_by(t.category, t.direction)
    )
    rollup_month = MONTHLY.summarize("category", "direction").where(
        m.organization_id == 1, m.month == "2026-10"
    )

    async def run(stmt: Any) -> list[Any]:
        async with db.reader() as session:
            return list((await session.execute(stmt)).all())

    # Same answer both ways (the point of the exercise).
    expected = {
        (r[0], r[1], getattr(r[2], "value", r[2])): (r[3], int(r[4]))
        for r in await run(group_by_all)
    }
    got = {
        (r.month, r.category, getattr(r.direction, "value", r.direction)): (r.count, r.amount_cents)
        for r in await run(rollup_all)
    }
    assert expected == got, "rollup differs from the GROUP BY"
    return {
        "all_group_by": await timed(lambda: run(group_by_all), runs=5),
        "all_rollup": await timed(lambda: run(rollup_all), runs=200),
        "month_group_by": await timed(lambda: run(group_by_month), runs=20),
        "month_rollup": await timed(lambda: run(rollup_month), runs=200),
    }


# -- 2. write ----------------------------------------------------------------------------------


async def bench_write(url: str, data_dir: Path, n: int) -> dict[str, float]:
    """Per-transaction seconds of insert + commit, three ways, interleaved in rounds."""
    plain = Database(settings_for(url, data_dir))
    rolled = Database(settings_for(url, data_dir))
    AGGREGATES.install(rolled)
    fed = Database(settings_for(url, data_dir))
    Changes(fed, tracking())
    full = Database(settings_for(url, data_dir))
    AGGREGATES.install(full)
    Changes(full, tracking())
    variants = {"plain": plain, "rollups": rolled, "feed": fed, "feed+rollups": full}
    rng = random.Random(3)
    async with plain.reader() as session:
        cases = [(c.id, c.organization_id) for c in (await session.scalars(select(Case))).all()]

    def row() -> Transaction:
        case_id, org = rng.choice(cases)
        return Transaction(
            organization_id=org,
            case_id=case_id,
            posted_on=dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 300)),
            amount_cents=rng.randint(100, 100_000),
            currency="EUR",
            direction=rng.choice(["debit", "credit"]),
            category=rng.choice(CATEGORIES),
            flagged=rng.random() < 0.03,
        )

    untracked: list[int] = []  # rows written without rollup maintenance, removed after

    async def one(db: Database) -> None:
        txn = row()
        async with db.writer() as session:
            session.add(txn)
        if db is plain or db is fed:
            untracked.append(txn.id)

    totals = dict.fromkeys(variants, 0.0)
    cpu = dict.fromkeys(variants, 0.0)  # process CPU (both threads): work, not waiting
    rounds = 10
    try:
        for db in variants.values():  # warm up: connections, statement caches
            for _ in range(50):
                await one(db)
        for _ in range(rounds):  # interleaved, so noise hits every variant alike
            for name, db in variants.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                for _ in range(n // rounds):
                    await one(db)
                totals[name] += time.perf_counter() - started
                cpu[name] += time.process_time() - started_cpu
        async with plain.writer_engine.begin() as conn:  # behind lockstep's back
            for start in range(0, len(untracked), 500):
                chunk = untracked[start : start + 500]
                await conn.execute(LEDGER.delete().where(LEDGER.c.id.in_(chunk)))
    finally:
        for db in variants.values():
            await db.dispose()
    return {
        **{name: total / n for name, total in totals.items()},
        **{f"cpu:{name}": total / n for name, total in cpu.items()},
    }


# -- 3. import ---------------------------------------------------------------------------------


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(11)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(
            ["date", "amount", "direction", "category", "currency", "counterparty", "description"]
        )
        for i in range(rows):
            day = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 300))
            cents = int(rng.lognormvariate(9, 1.4)) + 1
            out.writerow(
                [
                    day.isoformat(),
                    f"{cents // 100}.{cents % 100:02d}",
                    rng.choice(("debit", "credit")),
                    rng.choice(CATEGORIES),
                    "EUR",
                    rng.choice(COUNTERPARTIES),
                    f"statement line {i} ref {rng.randint(10**8, 10**9)}",
                ]
            )


async def plain_import(db: Database, path: Path, case_id: int, org: int) -> int:
    """What an app without lockstep writes: DictReader, convert, executemany, one commit.
    Its rows are lockstep's, created_at included (casebook gives a file's rows one)."""
    rows = 0
    batch: list[dict[str, Any]] = []
    created_at = dt.datetime.now(dt.UTC)
    async with db.writer() as session:
        with path.open(newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                batch.append(
                    {
                        "organization_id": org,
                        "case_id": case_id,
                        "posted_on": dt.date.fromisoformat(record["date"]),
                        "amount_cents": int(Decimal(record["amount"]) * 100),
                        "direction": record["direction"],
                        "category": record["category"],
                        "currency": record["currency"],
                        "counterparty": record["counterparty"],
                        "description": record["description"],
                        "flagged": False,
                        "version": 1,
                        "created_at": created_at,
                    }
                )
                if len(batch) == 5_000:
                    await session.execute(insert(LEDGER), batch)
                    rows += len(batch)
                    batch = []
        if batch:
            await session.execute(insert(LEDGER), batch)
            rows += len(batch)
    return rows


FLOOR_COLUMNS = (
    "organization_id", "case_id", "posted_on", "amount_cents", "direction", "category",
    "currency", "counterparty", "description", "flagged", "version", "created_at",
)  # fmt: skip


def floor_rows(path: Path, case_id: int, org: int, *, postgres: bool) -> list[tuple[Any, ...]]:
    """The file's rows as the driver takes them (FLOOR_COLUMNS), converted up front."""
    now = dt.datetime.now(dt.UTC)
    created: Any = now if postgres else now.strftime("%Y-%m-%d %H:%M:%S.%f")
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            (org, case_id,
             dt.date.fromisoformat(r["date"]) if postgres else r["date"],
             int(Decimal(r["amount"]) * 100), r["direction"], r["category"], r["currency"],
             r["counterparty"], r["description"], False if postgres else 0, 1, created)
            for r in csv.DictReader(handle)
        ]  # fmt: skip


async def postgres_floor(url: str, path: Path, case_id: int, org: int) -> float:
    """The physical limit on PostgreSQL: seconds for asyncpg's binary COPY of the file's rows,
    already converted (no parsing, no SQLAlchemy), in one transaction on the same database;
    rolled back, so nothing changes."""
    import asyncpg  # the bench's own connection, beside SQLAlchemy's pool

    values = floor_rows(path, case_id, org, postgres=True)
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        transaction = connection.transaction()
        await transaction.start()
        started = time.perf_counter()
        for i in range(0, len(values), 5_000):  # the import's batch size
            await connection.copy_records_to_table(
                "transactions", records=values[i : i + 5_000], columns=list(FLOOR_COLUMNS)
            )
        elapsed = time.perf_counter() - started
        await transaction.rollback()
    finally:
        await connection.close()
    return elapsed


def driver_floor(path: Path, database: Path, case_id: int, org: int) -> float:
    """The physical limit on SQLite: seconds for ``sqlite3.executemany`` of the file's rows,
    already converted to the driver's values (no parsing, no SQLAlchemy), in one transaction
    on the same database with the same pragmas; rolled back, so nothing changes."""
    columns = ", ".join(FLOOR_COLUMNS)
    values = floor_rows(path, case_id, org, postgres=False)
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            connection.execute(f"PRAGMA {pragma}")
        connection.execute("PRAGMA cache_size=-65536")
        connection.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        connection.executemany(
            f"INSERT INTO transactions ({columns}) VALUES ({', '.join('?' * 12)})", values
        )
        elapsed = time.perf_counter() - started
        connection.execute("ROLLBACK")
    finally:
        connection.close()
    return elapsed


async def bench_import(url: str, data_dir: Path, rows: int) -> dict[str, float]:
    path = data_dir / "import.csv"
    write_csv(path, rows)
    size = path.stat().st_size
    plain = Database(settings_for(url, data_dir))
    full = Database(settings_for(url, data_dir))
    AGGREGATES.install(full)
    Changes(full, tracking())
    async with plain.reader() as session:
        cases = [
            (c.id, c.organization_id)
            for c in (await session.scalars(select(Case).order_by(Case.id))).all()
        ]
    best = {"plain": float("inf"), "lockstep": float("inf"), "floor": float("inf")}
    try:
        for round_no in range(3):  # best of three: the machine is shared
            case_id, org = cases[round_no * 2]
            async with plain.reader() as session:
                last_id = await session.scalar(select(func.max(Transaction.id)))
            started = time.perf_counter()
            assert await plain_import(plain, path, case_id, org) == rows
            best["plain"] = min(best["plain"], time.perf_counter() - started)
            # Take the plain rows out again behind lockstep's back (they were never in the
            # rollups), so both imports see the same table size and the rollups stay exact.
            async with plain.writer_engine.begin() as conn:
                await conn.execute(LEDGER.delete().where(LEDGER.c.id > last_id))
            case_id, org = cases[round_no * 2 + 1]
            started = time.perf_counter()
            spool = Spool.of_path(path)
            request = ImportRequest(org, case_id, spool, path.name)
            summary = await import_transactions(full, request)
            best["lockstep"] = min(best["lockstep"], time.perf_counter() - started)
            assert summary.outcome is not None
            assert summary.outcome.rows_written == rows, summary.message
            if plain.is_sqlite:
                database = Path(url.removeprefix("sqlite+aiosqlite:///"))
                floor = await asyncio.to_thread(driver_floor, path, database, case_id, org)
            else:
                floor = await postgres_floor(url, path, case_id, org)
            best["floor"] = min(best["floor"], floor)
        reports = await AGGREGATES.verify(full)
        assert all(r.ok for r in reports), "rollups drifted during the import"
    finally:
        await plain.dispose()
        await full.dispose()
    return {**best, "bytes": float(size)}


# -- driver ------------------------------------------------------------------------------------


async def run_backend(label: str, url: str, data_dir: Path, args: argparse.Namespace) -> list[str]:
    lines = [f"== {label}: {args.transactions:,} transactions"]
    db = Database(settings_for(url, data_dir))
    try:
        read = await bench_read(db)
    finally:
        await db.dispose()
    all_ratio = read["all_group_by"] / read["all_rollup"]
    month_ratio = read["month_group_by"] / read["month_rollup"]
    lines += [
        f"read, all-time dashboard: GROUP BY {read['all_group_by'] * 1000:8.2f} ms | rollup "
        f"{read['all_rollup'] * 1000:6.3f} ms | {all_ratio:7.1f}x "
        f"(target >= {TARGETS['read']:.0f}x)",
        f"read, one month:          GROUP BY {read['month_group_by'] * 1000:8.2f} ms | rollup "
        f"{read['month_rollup'] * 1000:6.3f} ms | {month_ratio:7.1f}x",
    ]
    log("\n".join(lines[-2:]))
    write = await bench_write(url, data_dir, args.writes)
    us = {k: v * 1e6 for k, v in write.items()}
    lines += [
        f"write, insert+commit:     plain {us['plain']:5.0f} us | 3 rollups {us['rollups']:5.0f} us"
        f" | feed {us['feed']:5.0f} us | feed+3 rollups {us['feed+rollups']:5.0f} us",
        f"write overhead:           rollup maintenance {write['rollups'] / write['plain']:.2f}x "
        f"plain (target <= {TARGETS['write']}x); {write['feed+rollups'] / write['feed']:.2f}x "
        f"with the feed on both sides; {write['feed+rollups'] / write['plain']:.2f}x all of "
        "lockstep vs plain",
        f"write, CPU per commit:    plain {us['cpu:plain']:5.0f} us | 3 rollups "
        f"{us['cpu:rollups']:5.0f} us ({write['cpu:rollups'] / write['cpu:plain']:.2f}x) | feed "
        f"{us['cpu:feed']:5.0f} us | feed+3 rollups {us['cpu:feed+rollups']:5.0f} us",
    ]
    log("\n".join(lines[-3:]))
    imported = await bench_import(url, data_dir, args.import_rows)
    rate = args.import_rows / imported["lockstep"]
    lines += [
        f"import {args.import_rows:,} rows ({imported['bytes'] / 1e6:.1f} MB): plain "
        f"{imported['plain']:.2f} s | lockstep {imported['lockstep']:.2f} s "
        f"({rate:,.0f} rows/s) | {imported['plain'] / imported['lockstep']:.2f}x plain throughput "
        f"(target >= {TARGETS['import']}x, >= {TARGETS['rows_per_s']:,} rows/s on SQLite)",
    ]
    log(lines[-1])
    if imported["floor"] != float("inf"):
        floor_rate = args.import_rows / imported["floor"]
        how = "sqlite3.executemany" if label == "SQLite" else "asyncpg's binary COPY"
        lines.append(
            f"import, the driver's floor: {how} of the converted rows "
            f"{imported['floor']:.2f} s ({floor_rate:,.0f} rows/s); lockstep's whole import is "
            f"{rate / floor_rate:.2f}x of it"
        )
        log(lines[-1])
    return lines


def prepare_cache(cache: Path, seeded_file: Path) -> Path | None:
    """Where to build the seeded database, or None when a previous run left it."""
    cache.mkdir(parents=True, exist_ok=True)
    if seeded_file.exists():
        return None
    building = cache / "building.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    return building


async def main_async(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    cache = Path(args.cache_dir)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-agg-")))
        seeded_file = cache / f"casebook-{args.transactions}.db"
        building = prepare_cache(cache, seeded_file)
        if building is not None:
            await seeded(f"sqlite+aiosqlite:///{building}", cache, args.transactions)
            building.rename(seeded_file)
        shutil.copy(seeded_file, work / "bench.db")
        await migrated(f"sqlite+aiosqlite:///{work / 'bench.db'}", work)  # a cache from before
        out += await run_backend("SQLite", f"sqlite+aiosqlite:///{work / 'bench.db'}", work, args)
        if args.postgres:
            server = stack.enter_context(PostgresServer())
            url = server.create_database("bench_aggregates")
            await seeded(url, work, args.transactions)
            out += await run_backend("PostgreSQL", url, work, args)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=2_000, help="transactions per write variant")
    parser.add_argument("--import-rows", type=int, default=150_000)
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument(
        "--cache-dir", default=os.path.join(tempfile.gettempdir(), "lockstep-bench")
    )
    parser.add_argument("--time-limit", type=float, default=900.0)
    args = parser.parse_args()
    try:
        lines = asyncio.run(asyncio.wait_for(main_async(args), args.time_limit))
    except TimeoutError:
        log(f"stopped: over the {args.time_limit:.0f}s time limit")
        return 1
    log("\n".join(["", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
