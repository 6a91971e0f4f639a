"""Offline sync: snapshot throughput and live-change latency of a shape (SQLite, one run).

* Snapshot: a 100k-row shape read from ``offset=-1`` until up-to-date (pages of 10,000 rows),
  against the ceiling: a plain paginated JSON endpoint over the same rows (the same columns,
  keyset pages of 10,000, one dict per row, orjson in one call). Target: >= 0.8x the
  ceiling's rows/s. Measured in ``ROUNDS`` rounds after a warm-up, the two sides alternating
  (which goes first swaps each round), each pass starting from a collected heap so neither
  pays for the other's garbage; printed: the median of the rounds' ratios and their range.
* Live: a client long-polls the shape while 200 one-row commits land one after another;
  latency from the commit returning to the client holding the change. Target: p99 <= 100 ms.
  Beside it, on the same commits, a bare long poll (a FastAPI route woken by the change
  hub's publish, no shape, no read): a reference for what the machine allows at that
  moment. Full (generation 2) garbage collections during the phase are counted: one
  pauses everything for its length.
* Write cost: a one-row commit to a shaped table against the same commit without the
  shape log, in alternating blocks (median and range of the pairs' ratios).

Both systems run in this process through ASGI (no network), in the same run; every loop is
bounded in count and the whole run in time (``TIME_LIMIT_SECONDS``).
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import math
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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
ROUNDS = 5
COMMITS = 200
MAX_PAGES = ROWS // PAGE + 2  # a loop that does not end by then is a failure, not a wait
TIME_LIMIT_SECONDS = 600.0
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

    def keyset_page(after: int) -> Any:
        return select(items).where(items.c.org == 1, items.c.id > after).order_by(items.c.id)

    @app.get("/items")
    async def page(after: int = 0) -> object:
        """The ceiling of the target, as it was set: rows as mappings, a dict per row."""
        async with db.reader() as session:
            result = await session.execute(keyset_page(after).limit(PAGE))
            rows = result.mappings().all()
        # str(): SQLAlchemy's column names are str subclasses, which orjson refuses as keys.
        body = orjson.dumps([{str(k): v for k, v in r.items()} for r in rows])
        return Response(body, media_type="application/json")

    @app.get("/items-lean")
    async def lean_page(after: int = 0) -> object:
        """A stricter ceiling: the column names once, then ``dict(zip(...))`` per row."""
        async with db.reader() as session:
            result = await session.execute(keyset_page(after).limit(PAGE))
            names = [str(name) for name in result.keys()]  # noqa: SIM118 (a Result)
            body = orjson.dumps([dict(zip(names, row, strict=True)) for row in result])
        return Response(body, media_type="application/json")

    # The live reference: a long poll with an offset over the txids of this process's
    # commits, woken by the change hub's publish; no shape, no read, no filter.
    committed: list[int] = []
    moved = [asyncio.Event()]

    async def remember(changeset: Any) -> None:
        committed.append(changeset.txid)
        event, moved[0] = moved[0], asyncio.Event()
        event.set()

    runtime.changes.hub.subscribe(remember)

    @app.get("/bare")
    async def bare(after: int = 0) -> object:
        deadline = time.monotonic() + 5
        while not committed or committed[-1] <= after:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await runtime.changes.hub.wait(moved[0], remaining):
                break
        newer = committed[bisect.bisect_right(committed, after) :]
        return Response(orjson.dumps(newer), media_type="application/json")

    return app, db


class Timed:
    """A client whose GETs are timed: the time spent serving, apart from the caller's."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.serving = 0.0

    async def get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        started = time.perf_counter()
        try:
            return await self.client.get(path, params=params)
        finally:
            self.serving += time.perf_counter() - started


async def plain_pass(client: httpx.AsyncClient, path: str = "/items") -> tuple[float, float]:
    """Rows/s of a plain endpoint, every row read once: end to end (the client decoding
    every page), and of the serving alone."""
    gc.collect()
    timed = Timed(client)
    started = time.perf_counter()
    after, count = 0, 0
    for _ in range(MAX_PAGES):
        rows = orjson.loads((await timed.get(path, params={"after": after})).content)
        count += len(rows)
        if len(rows) < PAGE:
            break
        after = rows[-1]["id"]
    else:
        raise RuntimeError("the plain endpoint did not end")
    elapsed = time.perf_counter() - started
    assert count == ROWS, count
    return count / elapsed, count / timed.serving


async def shape_pass(client: httpx.AsyncClient) -> tuple[float, float]:
    """Rows/s of the shape from ``offset=-1`` to up-to-date, every row read once (as
    :func:`plain_pass`)."""
    gc.collect()
    timed = Timed(client)
    started = time.perf_counter()
    query, shaped = {"table": "items", "offset": "-1"}, 0
    for _ in range(MAX_PAGES):
        response = await timed.get("/v1/shape", params=query)
        body = orjson.loads(response.content)
        shaped += sum(1 for m in body if "key" in m)
        if response.headers.get("electric-up-to-date") is not None:
            break
        query = {
            "table": "items",
            "offset": response.headers["electric-offset"],
            "handle": response.headers["electric-handle"],
        }
    else:
        raise RuntimeError("the shape never reached up-to-date")
    elapsed = time.perf_counter() - started
    assert shaped == ROWS, shaped
    return shaped / elapsed, shaped / timed.serving


Rates = dict[str, tuple[float, float]]


async def snapshot_rates(app: FastAPI) -> list[Rates]:
    """Each round's (end to end, serving) rows/s of the shape, the ceiling, the lean one."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        passes: dict[str, Callable[[], Awaitable[tuple[float, float]]]] = {
            "shape": lambda: shape_pass(client),
            "plain": lambda: plain_pass(client),
            "lean": lambda: plain_pass(client, "/items-lean"),
        }
        for run in passes.values():  # warm: statement caches, the page cache
            await run()
        rounds = []
        order = list(passes)
        for _ in range(ROUNDS):
            order = order[1:] + order[:1]  # each side goes first, second and last in turn
            rounds.append({name: await passes[name]() for name in order})
        return rounds


class FullCollections:
    """Counts generation-2 collections and their pauses while installed."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)


async def live_latency(app: FastAPI, db: Database) -> tuple[list[float], list[float]]:
    """Commit -> client latencies of the shape's long poll and of the bare one."""
    transport = httpx.ASGITransport(app=app)
    seen: dict[int, float] = {}
    bare_seen: dict[int, float] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=30) as c:
        first = await c.get("/v1/shape", params={"table": "items", "offset": "now"})
        query = {
            "table": "items",
            "handle": first.headers["electric-handle"],
            "offset": first.headers["electric-offset"],
            "live": "true",
        }
        ready, bare_ready = asyncio.Event(), asyncio.Event()

        async def follow() -> None:
            for _ in range(COMMITS * 2):  # at most one answer per commit, and timeouts
                if len(seen) >= COMMITS:
                    return
                ready.set()
                response = await c.get("/v1/shape", params=query)
                now = time.perf_counter()
                for message in response.json():
                    for txid in message.get("headers", {}).get("txids", []):
                        seen.setdefault(txid, now)
                query["offset"] = response.headers["electric-offset"]
                query["cursor"] = response.headers.get("electric-cursor", "")

        async def follow_bare() -> None:
            after = 0
            for _ in range(COMMITS * 2):
                if len(bare_seen) >= COMMITS:
                    return
                bare_ready.set()
                response = await c.get("/bare", params={"after": after})
                now = time.perf_counter()
                for txid in response.json():
                    bare_seen.setdefault(txid, now)
                    after = max(after, txid)

        follower = asyncio.create_task(follow())
        bare = asyncio.create_task(follow_bare())
        await ready.wait()
        await bare_ready.wait()
        committed: dict[int, float] = {}

        async def remember(changeset: Any) -> None:
            # The commit's time: its publish, right after COMMIT returned (shape waiters are
            # woken at COMMIT, the bare one at this publish: both after this moment).
            committed[changeset.txid] = time.perf_counter()

        app.state.runtime.changes.hub.subscribe(remember)
        for i in range(COMMITS):
            async with db.writer() as session:
                await session.execute(
                    update(items).where(items.c.id == 1 + i).values(title=f"live {i}")
                )
            await asyncio.sleep(0.002)  # one commit after another, not a burst
        await asyncio.wait_for(follower, 30)
        await asyncio.wait_for(bare, 30)
    shape = [seen[t] - committed[t] for t in committed]
    bare_latencies = [bare_seen[t] - committed[t] for t in committed if t in bare_seen]
    return shape, bare_latencies


async def write_cost(directory: Path, pairs: int = 7, commits: int = 50) -> list[float]:
    """Shaped / plain time of one-row commits, per pair of blocks (which goes first swaps);
    sorted. Commits wait on the disk, which other work on the machine shares: a pair's ratio
    is taken over seconds, not the whole run's."""
    dbs = []
    for shaped in (False, True):
        (directory / f"w{shaped}").mkdir()
        _app, db = await build(directory / f"w{shaped}", shaped=shaped)
        async with db.writer() as session:
            await session.execute(
                items.insert().values(id=1, org=1, title="t", amount=1, status="open")
            )
        dbs.append(db)
    ratios = []
    for pair in range(pairs):
        timings = [0.0, 0.0]
        for side in (0, 1) if pair % 2 else (1, 0):
            started = time.perf_counter()
            for i in range(commits):
                async with dbs[side].writer() as session:
                    await session.execute(update(items).where(items.c.id == 1).values(amount=i))
            timings[side] = time.perf_counter() - started
        ratios.append(timings[1] / timings[0])
    for db in dbs:
        await db.dispose()
    return sorted(ratios)


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value at or above a fraction ``q`` of them."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def run() -> None:
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
        del rows  # the bench's own data is not the server's heap
        rounds = await snapshot_rates(app)
        shape, ceiling, lean = (
            statistics.median(r[name][0] for r in rounds) for name in ("shape", "plain", "lean")
        )
        print(
            f"snapshot {ROWS} rows (medians of {ROUNDS} rounds): shape {shape:,.0f} rows/s, "
            f"plain paginated JSON {ceiling:,.0f} rows/s, the lean one {lean:,.0f} rows/s"
        )
        for label, name in (("the ceiling (target >= 0.8x)", "plain"), ("the lean one", "lean")):
            ends = sorted(r["shape"][0] / r[name][0] for r in rounds)
            served = sorted(r["shape"][1] / r[name][1] for r in rounds)
            print(
                f"  shape / {label}: {statistics.median(ends):.2f}x end to end "
                f"(rounds {ends[0]:.2f}-{ends[-1]:.2f}x); serving alone "
                f"{statistics.median(served):.2f}x ({served[0]:.2f}-{served[-1]:.2f}x)"
            )
        collections = FullCollections()
        gc.collect()
        gc.callbacks.append(collections)
        try:
            latencies, bare_latencies = await live_latency(app, db)
        finally:
            gc.callbacks.remove(collections)
        ms = [x * 1000 for x in latencies]
        bare_ms = [x * 1000 for x in bare_latencies]
        longest = max(collections.pauses, default=0.0) * 1000
        print(
            f"live: commit -> client p50 {percentile(ms, 0.5):.1f} ms, "
            f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms over {len(ms)} commits "
            f"(target p99 <= 100 ms); a bare long poll on the same commits: "
            f"p50 {percentile(bare_ms, 0.5):.1f} ms, p99 {percentile(bare_ms, 0.99):.1f} ms; "
            f"{len(collections.pauses)} full GC pauses (longest {longest:.0f} ms)"
        )
        await db.dispose()
        costs = await write_cost(directory)
        print(
            f"one-row commit with the shape log: {statistics.median(costs):.2f}x the same "
            f"commit without it (pairs {costs[0]:.2f}-{costs[-1]:.2f}x)"
        )


async def main() -> None:
    async with asyncio.timeout(TIME_LIMIT_SECONDS):
        await run()


if __name__ == "__main__":
    asyncio.run(main())
