"""lockstep.client against real servers: the retry policy (never on 400/422), coalescing and
the ETag cache on a uvicorn in this loop; failover when one of two ``casebook serve``
processes is killed, and an offline outbox replayed in order once the server is back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from casebook.seed import DEMO_PASSWORD
from lockstep.client import Backoff, Client, Outbox, Shape, should_retry
from lockstep.testing import free_port


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """``app`` behind a real uvicorn on 127.0.0.1, in this event loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def programmable() -> tuple[FastAPI, dict[str, int]]:
    """An app whose ``/status/{code}`` answers ``code`` and counts the calls."""
    app = FastAPI()
    hits: dict[str, int] = {}
    gate, entered = asyncio.Event(), asyncio.Event()

    @app.get("/status/{code}")
    async def status(code: int, request: Request) -> Response:
        hits[f"status/{code}"] = hits.get(f"status/{code}", 0) + 1
        headers = {"Retry-After": "0"} if code in (429, 503) else {}
        return Response(b"{}", code, headers, media_type="application/json")

    @app.post("/status/{code}")
    async def post_status(code: int) -> Response:
        hits[f"post/{code}"] = hits.get(f"post/{code}", 0) + 1
        return Response(b"{}", code, media_type="application/json")

    @app.get("/slow")
    async def slow() -> Response:
        hits["slow"] = hits.get("slow", 0) + 1
        entered.set()
        await gate.wait()
        return Response(b'{"ok": true}', media_type="application/json")

    @app.get("/tagged")
    async def tagged(request: Request) -> Response:
        hits["tagged"] = hits.get("tagged", 0) + 1
        if request.headers.get("if-none-match") == '"v1"':
            return Response(status_code=304, headers={"ETag": '"v1"'})
        return Response(b'{"v": 1}', headers={"ETag": '"v1"'}, media_type="application/json")

    app.state.gate, app.state.entered = gate, entered
    return app, hits


@pytest.fixture
async def local() -> AsyncIterator[tuple[str, FastAPI, dict[str, int]]]:
    app, hits = programmable()
    async with serving(app) as base:
        yield base, app, hits


async def test_retries_only_what_may_be_retried(
    local: tuple[str, FastAPI, dict[str, int]],
) -> None:
    base, _, hits = local
    async with Client(base, backoff=Backoff(attempts=3, base=0.01, cap=0.02)) as client:
        for code in (400, 404, 422):
            assert (await client.get(f"/status/{code}")).status_code == code
            assert hits[f"status/{code}"] == 1  # an answer, not an accident
        for code in (429, 500, 503):
            assert (await client.get(f"/status/{code}")).status_code == code
            assert hits[f"status/{code}"] == 3
        assert (await client.post("/status/500")).status_code == 500
        assert hits["post/500"] == 1  # not idempotent: it may have been done
        assert (await client.post("/status/500", idempotent=True)).status_code == 500
        assert hits["post/500"] == 4
    assert should_retry("POST", httpx.ConnectError("refused"), False)
    assert not should_retry("POST", httpx.ReadTimeout("lost"), False)
    assert should_retry("GET", httpx.ReadTimeout("lost"), False)


async def test_identical_gets_in_flight_share_one_request_and_etags_revalidate(
    local: tuple[str, FastAPI, dict[str, int]],
) -> None:
    base, app, hits = local
    async with Client(base) as client:
        waiting = [asyncio.create_task(client.get("/slow")) for _ in range(20)]
        await app.state.entered.wait()
        app.state.gate.set()
        responses = await asyncio.gather(*waiting)
        assert {r.json()["ok"] for r in responses} == {True}
        assert hits["slow"] == 1
        first = await client.get("/tagged")
        second = await client.get("/tagged")
        assert first.json() == second.json() == {"v": 1}
        assert hits["tagged"] == 2  # the second was a 304, answered from the cache


# -- two casebook processes ---------------------------------------------------------------


def start(data_dir: Path, port: int, seed: bool) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "casebook", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir)] + (["--seed", "100"] if seed else [])
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "LOCKSTEP_JOBS_EMBEDDED_WORKER": "false"},
    )


def ready(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, "casebook serve exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "casebook serve did not become ready"
        time.sleep(0.05)  # noqa: sleep - polling another process's readiness probe


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[tuple[int, subprocess.Popen[str]]]]:
    first_port, second_port = free_port(), free_port()
    first = start(tmp_path, first_port, seed=True)
    servers = [(first_port, first)]
    try:
        ready(first_port, first)
        second = start(tmp_path, second_port, seed=False)
        servers.append((second_port, second))
        ready(second_port, second)
        yield servers
    finally:
        for _, process in servers:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            process.wait(timeout=60)


async def login(base: str) -> str:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post(
            "/api/v1/auth/token",
            data={"username": "analyst@acme.test", "password": DEMO_PASSWORD},
        )
        return str(response.json()["access_token"])


async def test_failover_and_an_offline_outbox_replayed_in_order(
    two_servers: list[tuple[int, subprocess.Popen[str]]], tmp_path: Path
) -> None:
    (first_port, first), (second_port, _) = two_servers
    bases = [f"http://127.0.0.1:{first_port}", f"http://127.0.0.1:{second_port}"]
    token = await login(bases[0])
    refreshed: list[str] = []

    def refresh() -> str:
        refreshed.append("x")
        return token

    backoff = Backoff(attempts=4, base=0.01, cap=0.05)
    async with Client(
        bases,
        token=lambda: "expired",
        refresh=refresh,
        backoff=backoff,
        balancing="least_outstanding",
    ) as client:
        assert (await client.get("/api/v1/cases")).status_code == 200
        assert refreshed == ["x"]  # a 401, one refresh, the same request again

        first.kill()
        first.wait(timeout=30)
        for _ in range(4):  # every request still answered, by the second server
            assert (await client.get("/api/v1/cases", params={"limit": 2})).status_code == 200
        assert client.servers_up == [bases[1]]

        shape = Shape(client, "cases", columns=["id", "title"])
        while not await shape.poll():
            pass
        assert shape.rows

    # Offline: edits queue in the outbox; the server is unreachable.
    outbox = Outbox(tmp_path / "edits.db")
    for title in ("one", "two", "three"):
        await outbox.add("case.update", {"case_id": 1, "title": title})
    await outbox.add("case.update", {"case_id": 1, "priority": 42})  # rejected: 422
    nowhere = Client(
        f"http://127.0.0.1:{free_port()}",
        token=lambda: token,
        backoff=Backoff(attempts=2, base=0.01, cap=0.02),
    )
    async with nowhere:
        report = await outbox.flush(nowhere)
    assert report.error is not None
    assert report.pending == 4
    async with Client(bases[1], token=lambda: token) as online:
        report = await outbox.flush(online)
        assert list(report.applied) == [1, 2, 3]
        assert all(isinstance(t, int) for t in report.applied.values())
        assert report.dead == [4]
        case = (await online.get("/api/v1/cases/1")).json()
        assert case["title"] == "three"
        again = await outbox.flush(online)  # nothing left: nothing sent twice
        assert again.applied == {}
    assert await outbox.pending() == []
    [dead] = await outbox.dead_letters()
    assert dead["error"]["code"] == "validation_error"
