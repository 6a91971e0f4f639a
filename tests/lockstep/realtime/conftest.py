"""Realtime servers for the conformance suite: ``realtime_app`` under uvicorn, one process on
SQLite (embedded mode) or two on PostgreSQL sharing a Redis of the suite's own (scale-out),
and the SDK agents that connect to them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from lockstep.realtime.revisions import ensure_realtime_tables
from lockstep.testing import PostgresServer, RedisServer, free_port

from ...conftest import in_ci, new_redis
from .agents import Agent, JsAgent, PyAgent, node_ready
from .realtime_app import Base

APP_DIR = Path(__file__).parent

SDKS = ["centrifuge-js", "centrifuge-js-5.0", "centrifuge-python"]


class AppProcess:
    """``uvicorn realtime_app:create_app`` in a process of its own."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.port = free_port()
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "realtime_app:create_app", "--factory"),
                *("--host", "127.0.0.1", "--port", str(self.port)),
                *("--log-level", "warning", "--no-access-log"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=APP_DIR,
        )
        threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, self.report()
            try:
                if httpx.get(f"{self.base}/stats", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.report()
            time.sleep(0.05)  # noqa: sleep - polling the readiness of another process

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line)

    def report(self) -> str:
        return f"--- {self.name} output:\n{''.join(self.output[-60:])}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Deployment:
    """What a scenario talks to: ``a`` and ``b`` are the same process in embedded mode."""

    mode: str
    a: AppProcess
    b: AppProcess
    redis: RedisServer | None = None

    async def post(self, path: str, via: AppProcess | None = None, **params: object) -> None:
        async with httpx.AsyncClient(base_url=(via or self.a).base, timeout=30) as http:
            response = await http.post(path, params=params)
            assert response.status_code == 200, response.text

    def token_url(self, tenant: str, user: str, ttl: float = 3600) -> str:
        return f"{self.a.base}/token?tenant={tenant}&user={user}&ttl={ttl}"

    def token(self, tenant: str, user: str, ttl: float = 3600) -> str:
        return f"{tenant}~{user}~{time.time() + ttl:.3f}"


def _env(**extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")},
        "PYTHONUNBUFFERED": "1",
        "LOCKSTEP_ENV": "test",
        "LOCKSTEP_LOG_FORMAT": "json",
        "LOCKSTEP_LOG_LEVEL": "WARNING",
        "LOCKSTEP_SLOW_QUERY_MS": "0",
        "LOCKSTEP_REALTIME_PING_SECONDS": "1",
        "LOCKSTEP_REALTIME_PONG_SECONDS": "3",
        "LOCKSTEP_REALTIME_HISTORY_SIZE": "100",
        "LOCKSTEP_REALTIME_CHECK_SECONDS": "0.5",
        "LOCKSTEP_REALTIME_CLIENT_QUEUE_BYTES": str(256 * 1024),
        **extra,
    }


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    path = tmp_path_factory.mktemp("realtime") / "app.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        Base.metadata.create_all(connection)
        ensure_realtime_tables(connection)
    engine.dispose()
    process = AppProcess("embedded", _env(LOCKSTEP_DATABASE_URL=f"sqlite+aiosqlite:///{path}"))
    try:
        yield Deployment("embedded", process, process)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def scaled(postgres_server: PostgresServer) -> Iterator[Deployment]:
    redis = new_redis()
    url = postgres_server.create_database("realtime_scaled")
    engine = create_engine(url.replace("+asyncpg", "+psycopg"))
    with engine.begin() as connection:
        Base.metadata.create_all(connection)
        ensure_realtime_tables(connection)
    engine.dispose()
    with redis:
        env = _env(
            LOCKSTEP_DATABASE_URL=url,
            LOCKSTEP_REDIS_URL=redis.url(),
            LOCKSTEP_REDIS_TIMEOUT="0.5",
        )
        a, b = AppProcess("A", env), AppProcess("B", env)
        try:
            yield Deployment("scaled", a, b, redis)
        finally:
            redis.resume()
            a.stop()
            b.stop()
    postgres_server.drop_database("realtime_scaled")


SCALED = pytest.param("scaled", marks=[pytest.mark.postgres, pytest.mark.redis])


@pytest.fixture(params=["embedded", SCALED])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    found: Deployment = request.getfixturevalue(request.param)
    return found


@pytest.fixture(params=SDKS)
async def make_agent(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """``await make_agent()`` → a started agent of the parametrized SDK (closed after)."""
    sdk = request.param
    if sdk.startswith("centrifuge-js"):
        reason = node_ready()
        if reason is not None:
            if in_ci():
                pytest.fail(reason)
            pytest.skip(reason)
    agents: list[Agent] = []

    async def make() -> Agent:
        agent: Agent
        if sdk == "centrifuge-python":
            agent = await PyAgent().start()
        else:
            package = "centrifuge-5.0" if sdk.endswith("5.0") else "centrifuge"
            agent = await JsAgent(package).start()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await asyncio.shield(agent.close())
