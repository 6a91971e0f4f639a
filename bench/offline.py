"""Offline sync: snapshot throughput and live-change latency of a shape (SQLite, one run).

* Snapshot: a 100k-row shape read from ``offset=-1`` until up-to-date (pages of 10,000 rows),
  against the ceiling: a plain paginated JSON endpoint over the same rows (keyset pages of
  10,000, orjson). Target: >= 0.8x the ceiling's rows/s.
* Live: a client long-polls the shape while 200 one-row commits land one after another;
  latency from the commit returning to the client holding the change. Target: p99 <= 100 ms.
* Write cost: a one-row commit to a shaped table against the same commit without the
  shape log.

Both systems run in this process through ASGI (no network), in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import Column, Integer, MetaData, String, Table, select, update
from starlette.responses import Response

from lockstep import Database, Lockstep, Settings, Tracking, bulk_insert
from lockstep.changes import ensure_change_log
from lockstep.offline import Offline, Shape, ensure_offline_tables

ROWS = 100_000
PAGE = 10_000
metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org", Integer, nullable=False),
    Column("title", String(80), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("status", String(10), nullable=False),
)


async def build(directory: Path, *, shaped: bool) -> tuple[FastAPI, Database]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{directory}/bench.db", env="test", slow_query_ms=0
    )
    db = Database(settings)
    async with db.writer_engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.run_sync(ensure_change_log)
        await connection.run_sync(ensure_offline_tables)
    runtime = Lockstep(settings, db, Tracking(metadata, scopes=["org"]))
    app = FastAPI()
    app.state.runtime = runtime
    if shaped:
        offline = Offline(
            db,
            runtime.changes,
            shapes=[Shape(items, scope=lambda r: {"org": 1})],
            chunk_rows=PAGE,
            long_poll_seconds=5,
        )
        offline.install(app)

    @app.get("/items")
    async def page(after: int = 0) -> object:
        async with db.reader() as session:
            rows = (
                (
                    await session.execute(
                        select(items)
                        .where(items.c.org == 1, items.c.id > after)
                        .order_by(items.c.id)
                        .limit(PAGE)
                    )
                )
                .mappings()
                .all()
            )
        # str(): SQLAlchemy's column names are str subclasses, which orjson refuses as keys.
        body = orjson.dumps([{str(k): v for k, v in r.items()} for r in rows])
        return Response(body, media_type="application/json")

    return app, db


async def snapshot_rate(app: FastAPI) -> tuple[float, float]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        started = time.perf_counter()
        after, count = 0, 0
        while True:
            rows = (await client.get("/items", params={"after": after})).json()
            count += len(rows)
            if len(rows) < PAGE:
                break
            after = rows[-1]["id"]
        ceiling = count / (time.perf_counter() - started)

        started = time.perf_counter()
        query, shaped = {"table": "items", "offset": "-1"}, 0
        while True:
            response = await client.get("/v1/shape", params=query)
            body = response.json()
            shaped += sum(1 for m in body if "key" in m)
            if response.headers.get("electric-up-to-date") is not None:
                break
            query = {
                "table": "items",
                "offset": response.headers["electric-offset"],
                "handle": response.headers["electric-handle"],
            }
        assert shaped == count == ROWS, (shaped, count)
        return shaped / (time.perf_counter() - started), ceiling


async def live_latency(app: FastAPI, db: Database, commits: int = 200) -> list[float]:
    transport = httpx.ASGITransport(app=app)
    seen: dict[int, float] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=30) as c:
        first = await c.get("/v1/shape", params={"table": "items", "offset": "now"})
        query = {
            "table": "items",
            "handle": first.headers["electric-handle"],
            "offset": first.headers["electric-offset"],
            "live": "true",
        }
        ready = asyncio.Event()

        async def follow() -> None:
            while len(seen) < commits:
                ready.set()
                response = await c.get("/v1/shape", params=query)
                now = time.perf_counter()
                for message in response.json():
                    for txid in message.get("headers", {}).get("txids", []):
                        seen.setdefault(txid, now)
                query["offset"] = response.headers["electric-offset"]
                query["cursor"] = response.headers.get("electric-cursor", "")

        follower = asyncio.create_task(follow())
        await ready.wait()
        committed: dict[int, float] = {}
        txids: list[int] = []

        async def remember(changeset: object) -> None:
            txids.append(changeset.txid)  # type: ignore[attr-defined]

        app.state.runtime.changes.hub.subscribe(remember)
        for i in range(commits):
            async with db.writer() as session:
                await session.execute(
                    update(items).where(items.c.id == 1 + i).values(title=f"live {i}")
                )
            committed[txids[-1]] = time.perf_counter()
            await asyncio.sleep(0.002)  # one commit after another, not a burst
        await asyncio.wait_for(follower, 30)
    return [seen[t] - committed[t] for t in committed]


async def write_cost(directory: Path) -> float:
    timings = []
    for shaped in (False, True):
        _app, db = await build(directory / ("shaped" if shaped else "plain"), shaped=shaped)
        async with db.writer() as session:
            await session.execute(
                items.insert().values(id=1, org=1, title="t", amount=1, status="open")
            )
        started = time.perf_counter()
        for i in range(500):
            async with db.writer() as session:
                await session.execute(update(items).where(items.c.id == 1).values(amount=i))
        timings.append(time.perf_counter() - started)
        await db.dispose()
    return timings[1] / timings[0]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "snap").mkdir()
        app, db = await build(directory / "snap", shaped=True)
        rows = [
            {"id": i, "org": 1, "title": f"item {i}", "amount": i * 7, "status": "open"}
            for i in range(1, ROWS + 1)
        ]
        async with db.writer() as session:  # one transaction above max_logged_rows: rotates
            await bulk_insert(session, items, rows)
        for _ in range(2):
            await snapshot_rate(app)  # warm
        shape, ceiling = await snapshot_rate(app)
        print(
            f"snapshot {ROWS} rows: shape {shape:,.0f} rows/s, plain paginated JSON "
            f"{ceiling:,.0f} rows/s -> {shape / ceiling:.2f}x the ceiling (target >= 0.8x)"
        )
        latencies = sorted(await live_latency(app, db))
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(
            f"live: commit -> client p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"over {len(latencies)} commits (target p99 <= 100 ms)"
        )
        await db.dispose()
        for name in ("plain", "shaped"):
            (directory / name).mkdir()
        print(
            f"one-row commit with the shape log: {await write_cost(directory):.2f}x "
            "the same commit without it"
        )


if __name__ == "__main__":
    asyncio.run(main())
