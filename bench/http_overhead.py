"""Per-request cost of lockstep's HTTP observability stack, against the bare FastAPI route.

Both apps serve the same route (a small JSON dict), in the same run, in interleaved rounds
so that CPU frequency changes and noise hit both alike.

Each app's result is its median round; the range of the rounds' ratios is printed as well.

* ASGI (default): each app is driven directly — a scope dict, a receive that returns the
  request once, a send that discards — so the ratio shows the stack against FastAPI alone.
* ``--server``: each app also runs under uvicorn (httptools, uvloop, one process) on
  127.0.0.1 and a small keep-alive client in this process loads them in turn; the ratio then
  includes the HTTP server's own per-request work, as production sees it.

The full app runs ``install_observability`` with default settings: access log ON, JSON lines
fully rendered and written to /dev/null (a real file handle: formatting and write included).
A third app (access log off) shows what the log line costs. With ``--server`` the child
processes' CPU time per request is reported as well (Linux /proc), which does not depend on
how fast the Python load client is.

The rate limiter: a fourth app is the full stack plus ``RateLimitMiddleware`` counting every
request per client address (sliding window, a limit never reached) in memory; its ratio to
the full stack is the limiter's cost (target: at least 0.95x). ``--redis`` adds a fifth, the
same limiter on a Redis of its own (started from the installed binary), and reports the
EVALSHA calls Redis received per request (target: at most 1 round trip) from its command
statistics.

    .venv/bin/python bench/http_overhead.py [--requests 20000] [--rounds 20] [--server] [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TextIO

from fastapi import FastAPI

from lockstep.http import install_observability
from lockstep.http.ratelimit import (
    MemoryRateLimitStore,
    RateLimit,
    RateLimiter,
    RateLimitMiddleware,
)
from lockstep.settings import load_settings

TARGET_RATIO = 0.80
LIMITER_TARGET = 0.95
FULL = "full"
LIMITED = "full-rate-limited"
LIMITED_REDIS = "full-rate-limited-redis"
VARIANTS = ["bare", FULL, "full-no-access-log", LIMITED]
LABELS = {
    "bare": "bare FastAPI route",
    FULL: "install_observability (default)",
    "full-no-access-log": "install_observability, access_log=False",
    LIMITED: "default + rate limit, memory",
    LIMITED_REDIS: "default + rate limit, Redis",
}
# Every request counted per address; never reached, so every request is served.
BENCH_LIMIT = RateLimit("bench", 10**9, 60, "sliding", by=("address",))
REDIS_URL = ""  # set by --redis
TIME_LIMIT_SECONDS = 120.0
SERVER_START_SECONDS = 30.0

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

_SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/items/42",
    "raw_path": b"/items/42",
    "query_string": b"",
    "root_path": "",
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}
_HEADERS = [(b"host", b"bench"), (b"accept", b"application/json"), (b"user-agent", b"bench")]
_REQUEST = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT = {"type": "http.disconnect"}
_HTTP_REQUEST = b"GET /items/42 HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n\r\n"


def _route(app: FastAPI) -> None:
    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "name": "widget", "price": 12.5, "tags": ["a", "b"]}


def build_bare() -> FastAPI:
    app = FastAPI()
    _route(app)
    return app


def build_full(
    data_dir: str, log_stream: TextIO, access_log: bool = True, limiter: str = ""
) -> FastAPI:
    app = FastAPI()
    _route(app)
    settings = load_settings(data_dir=data_dir, access_log=access_log)
    if limiter:
        if limiter == "redis":
            from lockstep.http.ratelimit.redis import RedisRateLimitStore

            store: Any = RedisRateLimitStore.from_url(REDIS_URL, timeout=1.0)
        else:
            store = MemoryRateLimitStore()
        app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(store), limits=[BENCH_LIMIT])
    install_observability(app, settings, log_stream=log_stream)
    return app


# -- direct ASGI -------------------------------------------------------------------------------


async def drive(app: ASGIApp, count: int) -> float:
    """Serve ``count`` requests; returns elapsed seconds. Fails on any non-200."""
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(count):
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return _DISCONNECT
            delivered = True
            return _REQUEST

        scope = {**_SCOPE, "headers": list(_HEADERS), "state": {}}
        await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    if statuses.count(200) != count:
        raise SystemExit(f"unexpected statuses: {sorted(set(statuses))}")
    return elapsed


# -- real server -------------------------------------------------------------------------------


def build(kind: str, data_dir: str, log_stream: TextIO) -> FastAPI:
    if kind == "bare":
        return build_bare()
    limiter = {LIMITED: "memory", LIMITED_REDIS: "redis"}.get(kind, "")
    return build_full(
        data_dir, log_stream, access_log=kind != "full-no-access-log", limiter=limiter
    )


def serve(kind: str, port: int) -> None:
    """Run one app under uvicorn until killed (the ``--serve`` child process)."""
    import uvicorn

    with tempfile.TemporaryDirectory() as data_dir, open(os.devnull, "w") as devnull:
        app = build(kind, data_dir, devnull)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), 0.0 where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_server(kind: str) -> Iterator[tuple[int, int]]:
    """A uvicorn child serving ``kind``; yields (port, pid)."""
    port = _free_port()
    command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    child = subprocess.Popen([*command, "--redis-url", REDIS_URL])
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit(f"{kind} server did not start") from None
                time.sleep(0.05)
        yield port, child.pid
    finally:
        child.terminate()
        child.wait(timeout=10)


async def load(port: int, count: int, connections: int = 8) -> float:
    """Send ``count`` GETs over keep-alive connections, one in flight each; elapsed seconds."""

    async def one_connection(requests: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(requests):
            writer.write(_HTTP_REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"unexpected response: {head[:40]!r}")
            start = head.index(b"content-length: ") + len(b"content-length: ")
            await reader.readexactly(int(head[start : head.index(b"\r\n", start)]))
        writer.close()
        await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection(count // connections) for _ in range(connections)))
    return time.perf_counter() - started


# -- rounds and report -------------------------------------------------------------------------


Rounds = dict[str, list[float]]
"""Seconds per request of each variant, one value per interleaved round."""


async def interleave(
    run: Callable[[str, int], Awaitable[float]], requests: int, rounds: int
) -> tuple[Rounds, int]:
    """Alternate the variants' rounds (order rotated every round); seconds per request of
    each variant in each round, and the requests each variant served."""
    per_round = max(requests // rounds, 1)
    times: Rounds = {name: [] for name in VARIANTS}
    deadline = time.monotonic() + TIME_LIMIT_SECONDS
    done = 0
    for index in range(rounds):
        shift = index % len(VARIANTS)
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            times[name].append(await run(name, per_round) / per_round)
        done += per_round
        if time.monotonic() > deadline:
            print(f"time limit reached after {index + 1} rounds")
            break
    return times, done


def report(title: str, per_request: dict[str, float], served: int, unit: str = "req/s") -> None:
    print(f"== {title}: {served} requests per app")
    bare = per_request["bare"]
    for name in VARIANTS:
        value = per_request[name]
        ratio = bare / value
        line = f"{LABELS[name]:41} {1 / value:7.0f} {unit}  {ratio:4.2f}x"
        if name != "bare":
            line += f"  +{(value - bare) * 1e6:5.1f} us/request"
        if name == FULL:
            verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
            line += f"  ({verdict} target {TARGET_RATIO:.2f}x)"
        print(line)


def report_rounds(title: str, times: Rounds, served: int) -> None:
    """The median round of each variant (a burst of load from another process spoils a
    round, not the result), then the range of the per-round ratios, for honesty."""
    report(title, {name: statistics.median(values) for name, values in times.items()}, served)
    for name in VARIANTS[1:]:
        ratios = [b / v for b, v in zip(times["bare"], times[name], strict=True)]
        print(f"  {LABELS[name]:39} rounds: {min(ratios):4.2f}x to {max(ratios):4.2f}x")
    for name in (LIMITED, LIMITED_REDIS):
        if name not in times:
            continue
        ratio = statistics.median(times[FULL]) / statistics.median(times[name])
        rounds = [f / v for f, v in zip(times[FULL], times[name], strict=True)]
        verdict = "meets" if name == LIMITED_REDIS or ratio >= LIMITER_TARGET else "MISSES"
        target = "" if name == LIMITED_REDIS else f" ({verdict} target {LIMITER_TARGET:.2f}x)"
        print(
            f"  {LABELS[name]} / default stack: {ratio:4.2f}x{target}, "
            f"rounds {min(rounds):4.2f}x to {max(rounds):4.2f}x"
        )


async def limiter_alone(requests: int, rounds: int, full_seconds: float) -> None:
    """The limiter layer by itself around an app that answers at once (best of ``rounds``:
    on a shared machine the best round is the one nothing else interrupted), set against
    the default stack's median time per request."""

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    limited = RateLimitMiddleware(
        answer, limiter=RateLimiter(MemoryRateLimitStore()), limits=[BENCH_LIMIT]
    )
    best = {"app": float("inf"), "limited": float("inf")}
    for _ in range(rounds):
        for name, app in (("app", answer), ("limited", limited)):
            best[name] = min(best[name], await drive(app, requests) / requests)
    cost = best["limited"] - best["app"]
    ratio = full_seconds / (full_seconds + cost)
    verdict = "meets" if ratio >= LIMITER_TARGET else "MISSES"
    print(
        f"  rate limiter layer alone (memory): +{cost * 1e6:.2f} us/request = "
        f"{ratio:4.2f}x of the default stack ({verdict} target {LIMITER_TARGET:.2f}x)"
    )


async def redis_round_trips(requests: int) -> None:
    """EVALSHA calls Redis received per request served by the Redis-limited app."""
    from redis.asyncio import Redis

    probe = Redis.from_url(REDIS_URL)
    await probe.config_resetstat()
    with tempfile.TemporaryDirectory() as data_dir, open(os.devnull, "w") as devnull:
        await drive(build(LIMITED_REDIS, data_dir, devnull), requests)
    stats = await probe.info("commandstats")
    await probe.aclose()
    calls = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_config|resetstat")
    evalsha = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    print(
        f"  Redis limiter: {evalsha / requests:.2f} round trips (EVALSHA) per request "
        f"(target at most 1), {calls / requests:.1f} commands run per request inside it"
    )


async def main(requests: int, rounds: int, server: bool) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {rounds} interleaved rounds")
    print("logs: JSON rendered and written to /dev/null (a real file handle)")
    with tempfile.TemporaryDirectory() as data_dir, open(os.devnull, "w") as devnull:
        apps = {name: build(name, data_dir, devnull) for name in VARIANTS}
        for app in apps.values():  # warm-up: builds middleware stacks, fills caches
            await drive(app, max(requests // 10, 200))

        async def direct(name: str, count: int) -> float:
            return await drive(apps[name], count)

        times, served = await interleave(direct, requests, rounds)
        report_rounds("direct ASGI", times, served)
        await limiter_alone(max(requests // rounds, 1000), rounds, statistics.median(times[FULL]))
        if REDIS_URL:
            await redis_round_trips(min(requests, 2000))

    if not server:
        return
    with ExitStack() as stack:
        servers = {name: stack.enter_context(running_server(name)) for name in VARIANTS}
        for port, _ in servers.values():
            await load(port, 800)  # warm-up
        cpu = dict.fromkeys(VARIANTS, 0.0)

        async def over_http(name: str, count: int) -> float:
            port, pid = servers[name]
            before = cpu_seconds(pid)
            elapsed = await load(port, count)
            cpu[name] += cpu_seconds(pid) - before
            return elapsed

        times, served = await interleave(over_http, requests, rounds)
        report_rounds("uvicorn on 127.0.0.1, throughput", times, served)
        if all(cpu.values()):
            cpu_per_request = {name: seconds / served for name, seconds in cpu.items()}
            report("uvicorn, server CPU time", cpu_per_request, served, unit="req/CPU-s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--server", action="store_true", help="also measure under uvicorn")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--redis", action="store_true", help="also the limiter on Redis")
    parser.add_argument("--redis-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        REDIS_URL = args.redis_url  # module global: the child builds its app with it
        serve(args.serve, args.port)
    elif args.redis:
        from lockstep.testing import RedisServer

        with RedisServer() as redis_server:
            REDIS_URL = redis_server.url()
            VARIANTS.append(LIMITED_REDIS)
            asyncio.run(main(args.requests, args.rounds, args.server))
    else:
        asyncio.run(main(args.requests, args.rounds, args.server))
