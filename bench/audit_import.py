"""What casebook's audit trail costs its import path: a statement imported with and without it.

Each round imports one CSV statement of ``--rows`` rows into a case (casebook's CLI path:
``import_transactions``, all-or-nothing, the rollups and the change feed installed), once
through a database with casebook's audit trail and once without, in alternating order (noise
hits both alike). Every file is new (the same file is refused as a duplicate). Printed: the
median wall time of an import each way, and their ratio. An import of more than 100 rows is
one summary entry per organization in the trail (plus the import record's own entries), so
the trail's cost should not grow with the rows.

    .venv/bin/python bench/audit_import.py [--rows 5000] [--rounds 7] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from casebook.audit import audit_trail
from casebook.imports import ImportRequest, import_transactions
from casebook.models import Case, ImportStatus
from casebook.rollups import AGGREGATES
from casebook.seed import CATEGORIES, seed
from casebook.services import MIGRATIONS, tracking
from lockstep import Changes, Database, Spool, load_settings, upgrade
from lockstep.audit import audit_table
from lockstep.testing import PostgresServer


def settings_for(url: str, data_dir: Path) -> Any:
    return load_settings(database_url=url, slow_query_ms=0, data_dir=data_dir, env="test")


def database(url: str, data_dir: Path, *, audited: bool) -> Database:
    """casebook's CLI import database (``ledger_cli._database``), with or without the trail."""
    db = Database(settings_for(url, data_dir))
    AGGREGATES.install(db)
    if audited:
        audit_trail().install(db)
    Changes(db, tracking())
    return db


def statement(path: Path, rows: int, rng: random.Random) -> Path:
    start = dt.date(2025, 1, 1)
    lines = ["date,amount,direction,category,counterparty"]
    for _ in range(rows):
        day = start + dt.timedelta(days=rng.randrange(600))
        cents = rng.randrange(100, 10_000_000)
        direction = rng.choice(("debit", "credit"))
        lines.append(
            f"{day.isoformat()},{cents // 100}.{cents % 100:02d},{direction},"
            f"{rng.choice(CATEGORIES)},Counterparty {rng.randrange(500)}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


async def bench(url: str, data_dir: Path, rows: int, rounds: int) -> dict[str, list[float]]:
    prep = Database(settings_for(url, data_dir))
    try:
        await upgrade(prep, MIGRATIONS)
        await seed(prep, transactions=1_000, today=dt.date(2026, 11, 1))
        async with prep.reader() as session:
            cases = list(await session.scalars(select(Case.id).where(Case.organization_id == 1)))
    finally:
        await prep.dispose()
    dbs = {
        "without audit": database(url, data_dir, audited=False),
        "with audit": database(url, data_dir, audited=True),
    }
    rng = random.Random(7)
    times: dict[str, list[float]] = {name: [] for name in dbs}
    try:
        for round_ in range(rounds + 1):  # the first round warms up and is not counted
            order = list(dbs) if round_ % 2 else list(reversed(dbs))
            for name in order:
                path = statement(data_dir / f"s-{round_}-{name[:4]}.csv", rows, rng)
                case = cases[round_ % len(cases)]
                request = ImportRequest(1, case, Spool.of_path(path), path.name)
                began = time.perf_counter()
                summary = await import_transactions(dbs[name], request)
                elapsed = time.perf_counter() - began
                if summary.status is not ImportStatus.IMPORTED:
                    raise SystemExit(f"import failed: {summary.message}")
                if round_:
                    times[name].append(elapsed)
        async with dbs["with audit"].reader() as session:
            entries = await session.scalar(select(func.count()).select_from(audit_table))
        print(f"audit entries per audited import: {(entries or 0) / (rounds + 1):.1f}")
    finally:
        for db in dbs.values():
            await db.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with ExitStack() as stack:
        data_dir = Path(tempfile.mkdtemp(prefix="audit-import-"))
        stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        if args.postgres:
            server = stack.enter_context(PostgresServer())
            url = server.create_database("bench")
        else:
            url = f"sqlite+aiosqlite:///{data_dir / 'bench.db'}"
        times = asyncio.run(bench(url, data_dir, args.rows, args.rounds))
    backend = "postgresql" if args.postgres else "sqlite"
    base = statistics.median(times["without audit"])
    print(f"{backend}: import of {args.rows:,} rows, median of {args.rounds} rounds")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<14} {median * 1000:9.1f} ms   {median / base:5.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
