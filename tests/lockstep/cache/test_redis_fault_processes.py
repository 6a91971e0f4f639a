"""Issue #12, item 5, end to end: two API processes (uvicorn serving ``fault_app.py``, each
its own OS process with its own Redis client, mirror and L1) on one PostgreSQL database and
one Redis that the test deletes from, flushes, fills past ``maxmemory``, freezes (SIGSTOP)
and restarts from an older snapshot.

Each case: a note is cached in both processes (served as a hit on both routes), the fault,
a write on A; then reads on B and on A, with A's ``Lockstep-Token`` at once and without it
once B has received the write's invalidation (for a frozen Redis: at once as well, since
nothing arrives): 0 stale answers after the write's response. The issue's reproduction had
40 of 40 reads stale on B (and 83 of 83 for a frozen Redis).

Waiting on another process can only be done by looking: those waits are bounded polling
loops over its ``/_cache`` state, marked ``# noqa: sleep``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from lockstep.changes import ensure_change_log
from lockstep.db import Database
from lockstep.settings import load_settings
from lockstep.testing import PostgresServer, RedisServer, free_port

from ...conftest import new_redis
from .fault_app import NAMESPACE, Base

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

APP_DIR = Path(__file__).parent
CLOCK = "{" + NAMESPACE + "}:clock"
READS = 40


class ApiProcess:
    """``uvicorn fault_app:create_app`` in a process of its own; output kept for reports."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "fault_app:create_app", "--factory"),
                *("--host", "127.0.0.1", "--port", str(self.port)),
                *("--log-level", "warning", "--no-access-log"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=APP_DIR,
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def report(self) -> str:
        return f"--- {self.name} output:\n{''.join(self.output[-60:])}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def fault_redis() -> Iterator[RedisServer]:
    with new_redis() as server:
        yield server


@pytest.fixture(scope="module")
def fault_database(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.create_database("redis_fault_processes")

    async def prepare() -> None:
        db = Database(load_settings(database_url=url, env="test", log_format="console"))
        try:
            async with db.writer_engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
                await conn.run_sync(ensure_change_log)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    yield url
    postgres_server.drop_database("redis_fault_processes")


@pytest.fixture(scope="module")
def api(fault_redis: RedisServer, fault_database: str) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")},
        "PYTHONUNBUFFERED": "1",
        "LOCKSTEP_ENV": "test",
        "LOCKSTEP_DATABASE_URL": fault_database,
        "LOCKSTEP_REDIS_URL": fault_redis.url(),
        "LOCKSTEP_REDIS_TIMEOUT": "0.5",
        "LOCKSTEP_REDIS_BREAKER_FAILURES": "2",
        "LOCKSTEP_REDIS_BREAKER_OPEN_SECONDS": "0.2",
        "LOCKSTEP_FEED_POLL_SECONDS": "0.2",
        "LOCKSTEP_LOG_FORMAT": "json",
        "LOCKSTEP_LOG_LEVEL": "WARNING",
        "LOCKSTEP_SLOW_QUERY_MS": "0",
    }
    processes = (ApiProcess("A", env), ApiProcess("B", env))
    try:
        yield processes
    finally:
        fault_redis.resume()
        for process in processes:
            process.stop()


async def state(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/_cache")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, processes: tuple[ApiProcess, ...]
) -> None:
    """Poll another process's state until ``condition`` holds; fail after 60 s."""
    deadline = time.monotonic() + 60
    delay = 0.01
    while True:
        try:
            if await condition():
                return
        except httpx.TransportError:
            pass  # still starting
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen\n" + "\n".join(p.report() for p in processes))
        for process in processes:
            assert process.process.poll() is None, process.report()
        await asyncio.sleep(delay)  # noqa: sleep - polling another process's state
        delay = min(delay * 2, 0.2)


@pytest.fixture
async def clients(
    api: tuple[ApiProcess, ApiProcess],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of A and B, once both caches are healthy again (live, trusted, closed)."""
    a = httpx.AsyncClient(base_url=api[0].base, timeout=30)
    b = httpx.AsyncClient(base_url=api[1].base, timeout=30)

    async def healthy() -> bool:
        for client in (a, b):
            current = await state(client)
            if not (current["live"] and current["trusted"] and current["breaker"] == "closed"):
                return False
        return True

    await until(healthy, "both caches healthy", api)
    yield a, b
    await a.aclose()
    await b.aclose()


ROUTES = ("/notes", "/private/notes")


async def text(
    client: httpx.AsyncClient, route: str, note: int, token: str | None = None
) -> tuple[str, str]:
    headers = {"Lockstep-Token": token} if token else {}
    response = await client.get(f"{route}/{note}", headers=headers)
    response.raise_for_status()
    return response.json()["text"], response.headers.get("x-cache", "")


async def write(client: httpx.AsyncClient, note: int, value: str) -> str:
    response = await client.put(f"/notes/{note}", params={"text": value})
    response.raise_for_status()
    return response.headers["lockstep-token"]


async def cached_everywhere(a: httpx.AsyncClient, b: httpx.AsyncClient, note: int) -> None:
    """The note is written, then cached in both processes and served from there."""
    await write(a, note, "old")

    async def hits() -> bool:
        results = [await text(client, route, note) for client in (a, b) for route in ROUTES]
        return all(result == ("old", "HIT") for result in results)

    # B learns of the write asynchronously; until then it may refill once more.
    deadline = time.monotonic() + 30
    while not await hits():
        assert time.monotonic() < deadline, "the note was never served from both caches"


async def reads(
    clients: tuple[httpx.AsyncClient, ...], note: int, token: str | None
) -> list[tuple[str, str]]:
    return [
        await text(client, route, note, token)
        for _ in range(READS // len(ROUTES))
        for client in clients
        for route in ROUTES
    ]


def stale(answers: list[tuple[str, str]], expected: str) -> list[tuple[str, str]]:
    return [answer for answer in answers if answer[0] != expected]


async def received_since(
    b: httpx.AsyncClient, count: int, api: tuple[ApiProcess, ApiProcess]
) -> None:
    async def arrived() -> bool:
        return bool((await state(b))["received"] > count)

    await until(arrived, "B received the invalidation", api)


async def write_then_never_stale(
    a: httpx.AsyncClient,
    b: httpx.AsyncClient,
    note: int,
    api: tuple[ApiProcess, ApiProcess],
    fault: Callable[[], None],
) -> None:
    await cached_everywhere(a, b, note)
    count = (await state(b))["received"]
    fault()
    token = await write(a, note, "new")
    answers = await reads((b, a), note, token)  # the token: fresh at once, anywhere
    await received_since(b, count, api)
    answers += await reads((b, a), note, None)
    assert stale(answers, "new") == [], "\n".join(p.report() for p in api)


# -- the cases ------------------------------------------------------------------------------


def sync_client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url(), socket_timeout=5)


async def test_deleting_the_sequence(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    api: tuple[ApiProcess, ApiProcess],
    fault_redis: RedisServer,
) -> None:
    """The clock hash holds the invalidation sequence (and the generation): DEL it."""

    def delete() -> None:
        with sync_client(fault_redis) as client:
            assert client.delete(CLOCK) == 1

    await write_then_never_stale(*clients, 1, api, delete)


async def test_flushall(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    api: tuple[ApiProcess, ApiProcess],
    fault_redis: RedisServer,
) -> None:
    await write_then_never_stale(*clients, 2, api, fault_redis.flushall)


async def test_eviction_under_allkeys_lru(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    api: tuple[ApiProcess, ApiProcess],
    fault_redis: RedisServer,
) -> None:
    note = 3

    def evict() -> None:
        # Past maxmemory until the note's stamp and the clock itself were evicted (the
        # heartbeats re-create the clock at once, under a new generation).
        stamp = "{" + NAMESPACE + "}:st:r:notes:" + str(note)
        with sync_client(fault_redis) as client:
            generation = client.hget(CLOCK, "gen")
            used = int(client.info("memory")["used_memory"])
            fault_redis.config_set("maxmemory-policy", "allkeys-lru")
            fault_redis.config_set("maxmemory", used + 2_000_000)
            try:
                for batch in range(400):  # bounded: 400 x 50 x 10 kB
                    pipe = client.pipeline(transaction=False)
                    for i in range(50):
                        pipe.set(f"filler:{batch}:{i}", b"x" * 10_000)
                    pipe.execute()
                    if not client.exists(stamp) and client.hget(CLOCK, "gen") != generation:
                        return
                pytest.fail("the stamp and the clock were never evicted")
            finally:
                fault_redis.config_set("maxmemory", 0)

    await write_then_never_stale(*clients, note, api, evict)


async def test_restart_from_an_older_snapshot(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    api: tuple[ApiProcess, ApiProcess],
    fault_redis: RedisServer,
) -> None:
    a, b = clients
    note = 4
    await cached_everywhere(a, b, note)
    fault_redis.snapshot()  # the stamps, the sequence and the cached answers of "old"
    count = (await state(b))["received"]
    token = await write(a, note, "new")
    await received_since(b, count, api)
    assert await text(b, "/notes", note) == ("new", "MISS")
    fault_redis.kill()
    fault_redis.start()  # the answers cached for "old" are current there again
    answers = await reads((b,), note, None)
    answers += await reads((a,), note, token)  # the writer, with its token
    answers += await reads((b, a), note, None)
    assert stale(answers, "new") == [], "\n".join(p.report() for p in api)
    resets = [(await state(client))["resets"] for client in clients]
    assert sum(r.get("restart", 0) for r in resets) >= 1, resets


async def test_a_frozen_redis(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    api: tuple[ApiProcess, ApiProcess],
    fault_redis: RedisServer,
) -> None:
    a, b = clients
    note = 5
    await cached_everywhere(a, b, note)
    rejected = (await state(b))["rejected"]
    fault_redis.pause()  # SIGSTOP
    try:
        token = await write(a, note, "new")  # its bump times out; the write is answered
        answers = await reads((b,), note, None)  # at once: B's lease has run out
        answers += await reads((b, a), note, token)
        assert stale(answers, "new") == [], "\n".join(p.report() for p in api)
        assert {status for _, status in answers} == {"BYPASS"}
        # Requests stopped waiting for Redis: the breaker answered almost all of them (one
        # request per open period probes Redis, and waits for it).
        frozen = await state(b)
        assert frozen["breaker"] != "closed"
        assert frozen["rejected"] - rejected >= READS
    finally:
        fault_redis.resume()  # SIGCONT
    answers = await reads((b, a), note, None)
    answers += await reads((b, a), note, token)

    async def recovered() -> bool:
        breakers = [(await state(client))["breaker"] for client in clients]
        return breakers == ["closed", "closed"]

    await until(recovered, "the breakers closed", api)
    answers += await reads((b, a), note, None)
    assert stale(answers, "new") == [], "\n".join(p.report() for p in api)
    assert await text(b, "/notes", note) == ("new", "HIT")  # and the cache works again
