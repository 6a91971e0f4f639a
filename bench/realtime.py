"""Realtime delivery, from commit to client, against a plain broadcast loop (the ceiling).

One run, one uvicorn server process (embedded mode: SQLite) and the clients in this process
(plain WebSocket clients speaking the Centrifugo protocol):

1. **fan-out**: 1,000 subscribers of one channel; 50 commits at 5/s (latency), then 200
   commits back to back, each publishing to it (throughput).
2. **ceiling**: as many clients on a bare ASGI WebSocket endpoint of the same server, open
   at the same time, and a route that sends the same frames to each in a plain loop
   (``for send in sockets: await send(frame)``): what the server can do with no protocol,
   no history, no buffer. Its bursts alternate with those of 1. (``ROUNDS`` each), so each
   ratio compares neighbouring bursts on a machine whose load changes by the minute.
3. **spread**: 1,000 channels of one subscriber each; 1,000 commits, one per channel.
4. **idle memory**: 10,000 connected, subscribed, idle clients; the server's RSS growth per
   connection, and the same for 10,000 bare WebSockets.

Printed: commit -> client latency p50/p99 (against the 50 ms target), deliveries per second
against the ceiling's (target >= 0.7x), the server's CPU microseconds per delivered
publication (both paths, from /proc; and how much of it the commits alone take), and KB
per idle connection (target <= 30 KB).

    .venv/bin/python bench/realtime.py [--subscribers 1000] [--idle 10000] [--profile PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

TARGET_P99_MS = 50.0
TARGET_RATIO = 0.7
TARGET_KB = 30.0
TIME_LIMIT_SECONDS = 180.0
PAD = "x" * 200  # a publication of ~260 bytes, like a ledger row


# -- the server (run as: realtime.py --serve PORT DB) --------------------------------------------


def server_app() -> Any:
    from fastapi import FastAPI

    from lockstep import Database, load_settings
    from lockstep.realtime import Credentials, Namespace, Realtime

    settings = load_settings()
    db = Database(settings)

    async def anyone(request: Any) -> Credentials:
        return Credentials(user=request.token)

    async def allowed(_credentials: Credentials, _channel: str) -> None:
        return None

    realtime = Realtime(
        settings, db, authenticate=anyone, namespaces=[Namespace("bench", authorize=allowed)]
    )

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with realtime.lifespan():
            yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    realtime.install(app)
    plain: list[Any] = []

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        plain.append(send)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            plain.remove(send)

    @app.post("/publish")
    async def publish(channel: str, n: int, spread: int = 0, every: float = 0) -> dict[str, Any]:
        for i in range(n):
            target = f"{channel}{i % spread}" if spread else channel
            async with db.writer() as session:
                realtime.publish(session, target, {"t": time.time(), "i": i, "pad": PAD})
            if every:
                await asyncio.sleep(every)  # a steady commit rate, for the latency figures
        return {"ok": True}

    @app.post("/plain")
    async def broadcast(n: int, every: float = 0) -> dict[str, Any]:
        for i in range(n):
            if every:
                await asyncio.sleep(every)
            frame = orjson.dumps(
                {"push": {"channel": "bench:one", "pub": {"data": {"t": time.time(), "i": i,
                                                                    "pad": PAD}, "offset": i}}}
            ).decode()  # fmt: skip
            for send in list(plain):
                await send({"type": "websocket.send", "text": frame})
        return {"ok": True}

    profiler: list[Any] = []

    @app.post("/profile")
    async def profile(on: bool, path: str = "") -> dict[str, Any]:
        """``--profile``: cProfile this server between on and off (one burst at a time)."""
        import cProfile

        if on:
            profiler[:] = [cProfile.Profile()]
            profiler[0].enable()
        elif profiler:
            profiler[0].disable()
            profiler.pop().dump_stats(path)
        return {"ok": True}

    from starlette.routing import WebSocketRoute

    class Bare:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await bare(scope, receive, send)

    app.router.routes.insert(0, WebSocketRoute("/plain", Bare()))
    return app


def serve(port: int, path: str) -> None:
    import uvicorn
    from sqlalchemy import create_engine

    from lockstep.realtime.revisions import ensure_realtime_tables

    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        ensure_realtime_tables(connection)
    engine.dispose()
    os.environ["LOCKSTEP_DATABASE_URL"] = f"sqlite+aiosqlite:///{path}"
    os.environ.setdefault("LOCKSTEP_REALTIME_CLIENT_QUEUE_BYTES", str(16 * 1024 * 1024))
    ws = os.environ.get("BENCH_WS", "auto")  # uvicorn's WebSocket implementation
    uvicorn.run(
        server_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws=ws,
        ws_per_message_deflate=os.environ.get("BENCH_DEFLATE") == "1",
    )


# -- the clients ---------------------------------------------------------------------------------


class Clients:
    """Connections that count what they receive and note its latency (one in ``sample``)."""

    def __init__(self, sample: int = 10) -> None:
        self.received = 0
        self.frames = 0  # WebSocket messages that carried publications
        self.latencies: list[float] = []
        self.sample = sample
        self.sockets: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()

    async def open(self, url: str, count: int, hello: list[bytes] | None = None) -> None:
        gate = asyncio.Semaphore(200)

        async def one(i: int) -> None:
            async with gate:
                ws = await websockets.connect(url, max_size=None, ping_interval=None)
                if hello is not None:
                    await ws.send(hello[i].decode())
                    replies = 0
                    while replies < 2:
                        replies += str(await ws.recv()).count('"id"')
                self.sockets.append(ws)
                self.tasks.append(asyncio.create_task(self._read(ws, i % self.sample == 0)))

        await asyncio.gather(*(one(i) for i in range(count)))

    async def _read(self, ws: Any, sampled: bool) -> None:
        try:
            async for message in ws:
                text = str(message)
                if "{}" in text and "{}" in text.split("\n"):
                    await ws.send("{}")  # answer the server's ping, as the SDKs do
                pubs = text.count('"pub"')
                if not pubs:
                    continue
                if sampled:
                    now = time.time()
                    for line in text.split("\n"):
                        if '"pub"' in line:
                            self.latencies.append(
                                now - orjson.loads(line)["push"]["pub"]["data"]["t"]
                            )
                self.received += pubs
                self.frames += 1
                self.changed.set()
        except websockets.ConnectionClosed:
            return

    async def until(self, total: int) -> None:
        try:
            async with asyncio.timeout(TIME_LIMIT_SECONDS):
                while self.received < total:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise SystemExit(f"only {self.received} of {total} deliveries arrived") from None

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


def hello(channel: str) -> bytes:
    connect = {"id": 1, "connect": {"token": "bench"}}
    subscribe = {"id": 2, "subscribe": {"channel": channel}}
    return orjson.dumps(connect) + b"\n" + orjson.dumps(subscribe)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@contextlib.asynccontextmanager
async def profiled(http: httpx.AsyncClient, path: str | None) -> AsyncIterator[None]:
    """With ``--profile``, cProfile the server for the block and print its top functions."""
    if not path:
        yield
        return
    await http.post("/profile", params={"on": True})
    try:
        yield
    finally:
        await http.post("/profile", params={"on": False, "path": path})
    import pstats

    print(f"-- server profile: {Path(path).name} --")
    pstats.Stats(path).sort_stats("tottime").print_stats(25)


async def burst(
    http: httpx.AsyncClient, pid: int, clients: Clients, path: str, params: dict[str, Any]
) -> tuple[float, float]:
    """``BURST`` commits (or plain broadcasts) back to back: (deliveries/s, CPU us each)."""
    total = BURST * len(clients.sockets)
    clients.received = clients.frames = 0
    cpu, started = cpu_seconds(pid), time.perf_counter()
    await http.post(path, params={**params, "n": BURST})
    await clients.until(total)
    return total / (time.perf_counter() - started), (cpu_seconds(pid) - cpu) / total * 1e6


async def delivery(
    base: str, pid: int, subscribers: int, profile: str | None = None
) -> dict[str, Any]:
    ws = base.replace("http", "ws")
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, timeout=TIME_LIMIT_SECONDS) as http:
        # 1. fan-out: N subscribers of one channel, and the ceiling: as many bare sockets
        #    fed by a plain loop, both open at once and measured turn about (the machine's
        #    load changes by the minute: a ratio is only fair between neighbouring bursts)
        clients, bare = Clients(), Clients()
        await clients.open(
            f"{ws}/connection/websocket", subscribers, [hello("bench:one")] * subscribers
        )
        await bare.open(f"{ws}/plain", subscribers)
        #    latency at a steady rate below what the machine can deliver
        await http.post("/publish", params={"channel": "bench:one", "n": PACED, "every": EVERY})
        await clients.until(PACED * subscribers)
        await http.post("/plain", params={"n": PACED, "every": EVERY})
        await bare.until(PACED * subscribers)
        out["fan_p50"], out["fan_p99"] = pct(clients.latencies, 0.5), pct(clients.latencies, 0.99)
        out["plain_p50"], out["plain_p99"] = pct(bare.latencies, 0.5), pct(bare.latencies, 0.99)
        #    throughput with commits back to back, ROUNDS times each, turn about
        ours: list[tuple[float, float]] = []
        plain: list[tuple[float, float]] = []
        frames = received = 0
        for round_ in range(ROUNDS):
            name = profile and round_ == 0 and profile
            async with profiled(http, name and f"{name}.fanout"):
                ours.append(await burst(http, pid, clients, "/publish", {"channel": "bench:one"}))
            frames, received = frames + clients.frames, received + clients.received
            async with profiled(http, name and f"{name}.plain"):
                plain.append(await burst(http, pid, bare, "/plain", {}))
        out["ratios"] = sorted(o[0] / c[0] for o, c in zip(ours, plain, strict=True))
        out["ours"], out["ours_cpu"] = median([o[0] for o in ours]), median([o[1] for o in ours])
        out["ceiling"] = median([c[0] for c in plain])
        out["ceiling_cpu"] = median([c[1] for c in plain])
        out["per_frame"] = received / frames
        await clients.close()
        await bare.close()
        # the same commits to a channel nobody subscribes: the share of the commits themselves
        cpu, started = cpu_seconds(pid), time.perf_counter()
        await http.post("/publish", params={"channel": "bench:nobody", "n": BURST})
        out["commit_cpu"] = (cpu_seconds(pid) - cpu) / (BURST * subscribers) * 1e6
        out["commits_per_s"] = BURST / (time.perf_counter() - started)

        # 2. spread: N channels of one subscriber, 200 commits/s, one channel each
        spread = Clients(sample=1)
        hellos = [hello(f"bench:c{i}") for i in range(subscribers)]
        await spread.open(f"{ws}/connection/websocket", subscribers, hellos)
        params = {"channel": "bench:c", "n": subscribers, "spread": subscribers, "every": 0.005}
        await http.post("/publish", params=params)
        await spread.until(subscribers)
        out["spread_p50"], out["spread_p99"] = (
            pct(spread.latencies, 0.5),
            pct(spread.latencies, 0.99),
        )
        await spread.close()
    return out


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def idle_kb(base: str, pid: int, count: int, bare: bool) -> float:
    """RSS growth per connection of a fresh server holding ``count`` idle clients."""
    ws = base.replace("http", "ws")
    before = rss_kb(pid)
    clients = Clients()
    if bare:
        await clients.open(f"{ws}/plain", count)
    else:
        await clients.open(f"{ws}/connection/websocket", count, [hello("bench:idle")] * count)
    grown = (rss_kb(pid) - before) / count
    await clients.close()
    return grown


BURST = 200
ROUNDS = 3  # bursts of each kind, turn about: the median and the range of their ratios
PACED, EVERY = 50, 0.2  # 5 commits/s: below what a loaded 2-core machine delivers to 1,000


def report(d: dict[str, Any], subscribers: int, idle: int, ours_kb: float, bare_kb: float) -> None:
    print(f"fan-out, {subscribers} subscribers of one channel:")
    print(
        f"  commit -> client at {1 / EVERY:.0f} commits/s: p50 {d['fan_p50']:.1f} ms, p99 "
        f"{d['fan_p99']:.1f} ms ({d['fan_p99'] / TARGET_P99_MS:.2f}x the "
        f"{TARGET_P99_MS:.0f} ms target; the plain loop's p99 {d['plain_p99']:.1f} ms, "
        f"{d['fan_p99'] / d['plain_p99']:.2f}x)"
    )
    ratios = d["ratios"]
    print(
        f"  {BURST} commits back to back ({ROUNDS} bursts, each beside a plain loop's): "
        f"{d['ours']:,.0f} deliveries/s vs the plain broadcast loop's {d['ceiling']:,.0f}: "
        f"{median(ratios):.2f}x the ceiling ({ratios[0]:.2f}-{ratios[-1]:.2f}x; target >= "
        f"{TARGET_RATIO}x); {d['per_frame']:.1f} publications per WebSocket frame (the loop: "
        f"1); the commits alone: {d['commits_per_s']:,.0f}/s"
    )
    print(
        f"  server CPU per delivered publication: {d['ours_cpu']:.1f} us vs "
        f"{d['ceiling_cpu']:.1f} us plain ({d['ours_cpu'] / d['ceiling_cpu']:.2f}x); of which "
        f"the commits themselves (the same {BURST} to a channel nobody subscribes) "
        f"{d['commit_cpu']:.1f} us, the rest {d['ours_cpu'] - d['commit_cpu']:.1f} us "
        f"({(d['ours_cpu'] - d['commit_cpu']) / d['ceiling_cpu']:.2f}x)"
    )
    print(f"spread, {subscribers} channels of one subscriber, one commit each (200/s):")
    print(
        f"  commit -> client p50 {d['spread_p50']:.1f} ms, p99 {d['spread_p99']:.1f} ms "
        f"({d['spread_p99'] / TARGET_P99_MS:.2f}x the target)"
    )
    print(f"idle, {idle} subscribed connections: {ours_kb:.1f} KB each "
          f"({ours_kb / TARGET_KB:.2f}x the {TARGET_KB:.0f} KB target; a bare WebSocket on the "
          f"same server {bare_kb:.1f} KB, {ours_kb / bare_kb:.2f}x)")  # fmt: skip


@contextlib.contextmanager
def server() -> Iterator[tuple[str, int]]:
    """A fresh bench server process: its base URL and pid."""
    from lockstep.testing import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
        env.update(LOCKSTEP_ENV="test", LOCKSTEP_LOG_LEVEL="WARNING", LOCKSTEP_SLOW_QUERY_MS="0")
        # A client process loaded with 1,000 sockets may answer a ping late: this measures
        # delivery, not liveness, so no connection is closed for a late pong.
        env.update(LOCKSTEP_REALTIME_PONG_SECONDS="120")
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), f"{tmp}/bench.db"], env=env
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base}/docs", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit("the bench server did not start") from None
                    time.sleep(0.05)  # waiting for another process to listen
            yield base, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--serve", nargs=2)
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="cProfile the server during each burst: PATH.fanout and PATH.plain (the figures "
        "then include the profiler's overhead: compare them only with each other)",
    )
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return
    with server() as (base, pid):
        figures = asyncio.run(delivery(base, pid, args.subscribers, args.profile))
    with server() as (base, pid):
        ours_kb = asyncio.run(idle_kb(base, pid, args.idle, bare=False))
    with server() as (base, pid):
        bare_kb = asyncio.run(idle_kb(base, pid, args.idle, bare=True))
    report(figures, args.subscribers, args.idle, ours_kb, bare_kb)


if __name__ == "__main__":
    main()
