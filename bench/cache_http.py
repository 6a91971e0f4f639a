"""Cached endpoint throughput: lockstep against fastapi-cache2, cashews, no cache and the ceiling.

One FastAPI route, ``GET /cases/{case_id}``: a case with its 50 latest transactions, read
from a table of ``--rows`` transactions (default 1,000,000) in SQLite. Each system gets its
own app, driven directly through ASGI in the same process, in interleaved rounds:

* ``ceiling``     the route returns constant pre-serialized bytes (nothing can be faster);
  ``ceiling (stack)`` the same behind lockstep's read-your-writes middleware
* ``no cache``    the query runs every time
* ``fastapi-cache2`` / ``cashews``  their decorators with in-memory backends (typical use)
* ``lockstep``    a public ``@cached`` route (L1 hit: version stamps + pre-serialized body,
  answered before routing)
* ``lockstep private``  the same keyed by the caller: routing and dependencies run first
* ``lockstep 304``  the same route answering ``If-None-Match`` before the handler runs

Then the write-during-fill race, forced with an event (no timing): a fill reads the case,
a write commits and invalidates the way each library documents, the fill stores. A reader
afterwards gets the stale page from the peers, the fresh one from lockstep.

    .venv/bin/python bench/cache_http.py [--rows 1000000] [--requests 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from cashews import Cache as CashewsCache
from fastapi import FastAPI, Header
from fastapi_cache import FastAPICache
from fastapi_cache.backends.inmemory import InMemoryBackend
from fastapi_cache.decorator import cache as fastapi_cache
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, text
from starlette.responses import Response

from lockstep import JSONBytesResponse, Lockstep, Scope, Tracking, cached, load_settings
from lockstep.changes import ensure_change_log
from lockstep.db import Database
from lockstep.http.consistency import ConsistencyMiddleware

CASES = 2_000
HOT_CASES = 20
TIME_LIMIT_SECONDS = 240.0

metadata = MetaData()
transactions = Table(
    "transactions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", Integer, nullable=False),
    Column("posted_on", Date, nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("category", String(20), nullable=False),
)
LATEST = text(
    "SELECT id, posted_on, amount_cents, category FROM transactions "
    "WHERE case_id = :case_id ORDER BY posted_on DESC, id DESC LIMIT 50"
)

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def build_database(path: Path, rows: int) -> None:
    rng = random.Random(7)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE transactions (id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL, "
        "posted_on DATE NOT NULL, amount_cents INTEGER NOT NULL, category VARCHAR(20) NOT NULL)"
    )
    batch = 100_000
    for start in range(0, rows, batch):
        conn.executemany(
            "INSERT INTO transactions VALUES (?, ?, ?, ?, ?)",
            [
                (
                    i + 1,
                    rng.randint(1, CASES),
                    f"202{rng.randint(4, 6)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    rng.randint(100, 10**7),
                    rng.choice("abcdefgh"),
                )
                for i in range(start, min(start + batch, rows))
            ],
        )
    conn.execute("CREATE INDEX ix_case_posted ON transactions (case_id, posted_on, id)")
    conn.commit()
    conn.close()


async def load_case(db: Database, case_id: int) -> dict[str, Any]:
    async with db.reader() as session:
        rows = (await session.execute(LATEST, {"case_id": case_id})).all()
    return {
        "case_id": case_id,
        "transactions": [
            {
                "id": r.id,
                "posted_on": str(r.posted_on),
                "amount_cents": r.amount_cents,
                "category": r.category,
            }
            for r in rows
        ],
    }


def build_apps(db: Database, runtime: Lockstep, constant: bytes) -> dict[str, FastAPI]:
    apps: dict[str, FastAPI] = {}

    ceiling = FastAPI()

    @ceiling.get("/cases/{case_id}")
    async def constant_page(case_id: int) -> Response:
        return Response(constant, media_type="application/json")

    apps["ceiling"] = ceiling

    # The same constant route behind the same middleware lockstep's app has (its
    # read-your-writes layer): what a cache hit in that app cannot beat.
    ceiling_stack = FastAPI()
    ceiling_stack.add_middleware(ConsistencyMiddleware)

    @ceiling_stack.get("/cases/{case_id}")
    async def constant_page_in_stack(case_id: int) -> Response:
        return Response(constant, media_type="application/json")

    apps["ceiling (stack)"] = ceiling_stack

    plain = FastAPI()

    @plain.get("/cases/{case_id}")
    async def uncached(case_id: int) -> JSONBytesResponse:
        return JSONBytesResponse(await load_case(db, case_id))

    apps["no cache"] = plain

    fc2 = FastAPI()

    @fc2.get("/cases/{case_id}")
    @fastapi_cache(expire=3600)
    async def fc2_page(case_id: int) -> dict[str, Any]:
        return await load_case(db, case_id)

    apps["fastapi-cache2"] = fc2

    cashews = CashewsCache()
    cashews.setup("mem://?size=100000")
    cw = FastAPI()

    @cw.get("/cases/{case_id}")
    @cashews(ttl="1h")
    async def cashews_page(case_id: int) -> dict[str, Any]:
        return await load_case(db, case_id)

    apps["cashews"] = cw

    ls = FastAPI()
    runtime.install(ls)

    @ls.get("/cases/{case_id}")
    @cached(
        name="case", public=True, depends=lambda case_id: [Scope("transactions", case_id=case_id)]
    )
    async def lockstep_page(case_id: int) -> JSONBytesResponse:
        return JSONBytesResponse(await load_case(db, case_id))

    apps["lockstep"] = ls
    apps["lockstep 304"] = ls

    # An authenticated route (keyed by the caller): hits go through routing and FastAPI's
    # dependency solving first, so authentication always runs before a 304 or a replay.
    private = FastAPI()
    runtime.install(private)

    @private.get("/cases/{case_id}")
    @cached(
        name="case_private",
        vary=lambda x_user: x_user,
        depends=lambda case_id: [Scope("transactions", case_id=case_id)],
    )
    async def lockstep_private_page(case_id: int, x_user: str = Header()) -> JSONBytesResponse:
        return JSONBytesResponse(await load_case(db, case_id))

    apps["lockstep private"] = private
    return apps


async def drive(app: ASGIApp, requests: int, etags: dict[int, bytes] | None) -> float:
    """Requests per second for ``requests`` GETs over the hot cases, straight through ASGI."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for i in range(requests):
        case_id = i % HOT_CASES + 1
        headers = [(b"host", b"bench"), (b"x-user", b"alice")]
        if etags is not None:
            headers.append((b"if-none-match", etags[case_id]))
        path = f"/cases/{case_id}"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    expected = 304 if etags is not None else 200
    if any(s != expected for s in statuses):
        raise RuntimeError(f"unexpected statuses: {sorted(set(statuses))}")
    return requests / elapsed


async def throughput(
    apps: dict[str, FastAPI], requests: int, rounds: int, deadline: float
) -> dict[str, float]:
    etags: dict[int, bytes] = {}
    for app in apps.values():  # warm every cache with every hot case
        await drive(app, HOT_CASES * 2, None)
    from httpx import ASGITransport, AsyncClient

    async with AsyncClient(transport=ASGITransport(app=apps["lockstep"]), base_url="http://b") as c:
        for case_id in range(1, HOT_CASES + 1):
            etags[case_id] = (await c.get(f"/cases/{case_id}")).headers["etag"].encode()
    best: dict[str, float] = {name: 0.0 for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            rate = await drive(app, requests, etags if name == "lockstep 304" else None)
            best[name] = max(best[name], rate)
        if time.monotonic() > deadline:
            break
    return best


async def race(db: Database, runtime: Lockstep) -> dict[str, bool]:
    """Is the page stale after a write lands during a fill? (True = stale, a defect)."""
    results: dict[str, bool] = {}
    case_id = 1

    async def add_transaction() -> int:
        async with db.writer() as session:
            await session.execute(
                transactions.insert().values(
                    case_id=case_id, posted_on=dt.date(2099, 1, 1), amount_cents=1, category="new"
                )
            )
            new_id = await session.scalar(text("SELECT max(id) FROM transactions"))
        return int(new_id or 0)

    def has(page: dict[str, Any], txn_id: int) -> bool:
        return any(t["id"] == txn_id for t in page["transactions"])

    async def run(
        name: str,
        get: Callable[[], Awaitable[dict[str, Any]]],
        invalidate: Callable[[], Awaitable[None]],
        gate: dict[str, asyncio.Event],
    ) -> None:
        gate["read"], gate["go"] = asyncio.Event(), asyncio.Event()
        fill = asyncio.create_task(get())
        await gate["read"].wait()  # the fill has read the old rows
        new_id = await add_transaction()  # a write commits...
        await invalidate()  # ...and invalidates as the library documents
        gate["go"].set()  # the fill now stores what it read
        await fill
        results[name] = not has(await get(), new_id)

    gate: dict[str, asyncio.Event] = {}

    async def slow_load() -> dict[str, Any]:
        page = await load_case(db, case_id)
        if "read" in gate and not gate["go"].is_set():
            gate["read"].set()
            await gate["go"].wait()
        return page

    @fastapi_cache(expire=3600, namespace="race")
    async def fc2_get() -> dict[str, Any]:
        return await slow_load()

    async def fc2_invalidate() -> None:
        await FastAPICache.clear(namespace="race")

    await run("fastapi-cache2", fc2_get, fc2_invalidate, gate)

    cashews = CashewsCache()
    cashews.setup("mem://")

    @cashews(ttl="1h", key="race:case")
    async def cashews_get() -> dict[str, Any]:
        return await slow_load()

    async def cashews_invalidate() -> None:
        await cashews.delete("race:case")

    await run("cashews", cashews_get, cashews_invalidate, gate)

    @runtime.cache.cached(depends=lambda: [Scope("transactions", case_id=case_id)], name="race")
    async def lockstep_get() -> dict[str, Any]:
        return await slow_load()

    async def lockstep_invalidate() -> None:
        return None  # the commit invalidated already, before writer() returned

    await run("lockstep", lockstep_get, lockstep_invalidate, gate)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    deadline = time.monotonic() + TIME_LIMIT_SECONDS
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        started = time.perf_counter()
        build_database(path, args.rows)
        print(f"built {args.rows:,} transactions in {time.perf_counter() - started:.1f} s")
        settings = load_settings(
            database_url=f"sqlite+aiosqlite:///{path}",
            data_dir=tmp,
            slow_query_ms=0,
            log_level="WARNING",
        )
        db = Database(settings)
        async with db.writer_engine.begin() as conn:
            await conn.run_sync(ensure_change_log)
        runtime = Lockstep(settings, db, Tracking(metadata, scopes=["case_id"]), namespace="bench")
        FastAPICache.init(InMemoryBackend(), prefix="fc2")
        constant = orjson.dumps(await load_case(db, 1))
        apps = build_apps(db, runtime, constant)
        rates = await throughput(apps, args.requests, args.rounds, deadline)
        ceiling = rates["ceiling"]
        print(f"\n{'system':<16}{'req/s':>10}{'x ceiling':>11}")
        for name, rate in rates.items():
            print(f"{name:<16}{rate:>10,.0f}{rate / ceiling:>11.2f}")
        ls, c304 = rates["lockstep"], rates["lockstep 304"]
        print()
        stack = rates["ceiling (stack)"]
        print(f"lockstep hit / ceiling       {ls / ceiling:.2f}  (target >= 0.90)")
        print(f"lockstep 304 / ceiling       {c304 / ceiling:.2f}  (target >= 0.95)")
        print(f"lockstep hit / same-stack ceiling  {ls / stack:.2f}")
        print(f"lockstep 304 / same-stack ceiling  {c304 / stack:.2f}")
        print(f"lockstep / cashews           {ls / rates['cashews']:.2f}  (target >= 3)")
        print(f"lockstep / fastapi-cache2    {ls / rates['fastapi-cache2']:.2f}  (target >= 3)")
        print(f"lockstep / no cache          {ls / rates['no cache']:.2f}")
        private_rate = rates["lockstep private"]
        print(f"lockstep private (authenticated route) / ceiling  {private_rate / ceiling:.2f}")
        print(f"lockstep private / cashews   {private_rate / rates['cashews']:.2f}")
        stale = await race(db, runtime)
        print("\nwrite lands during a fill, then a reader asks again:")
        for name, is_stale in stale.items():
            print(f"  {name:<16}{'STALE page served' if is_stale else 'fresh page'}")
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
