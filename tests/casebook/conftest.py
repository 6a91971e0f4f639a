"""casebook fixtures: a migrated, seeded database on each backend and logged-in clients."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from casebook.app import create_app
from casebook.seed import DEMO_PASSWORD, seed
from casebook.services import MIGRATIONS
from casebook.settings import CasebookSettings
from lockstep import Database, load_settings, upgrade

SEED_TRANSACTIONS = 600

Login = Callable[[str], Awaitable[httpx.AsyncClient]]


@pytest.fixture
def casebook_settings(database_url: str, tmp_path: Path) -> CasebookSettings:
    return load_settings(
        CasebookSettings,
        database_url=database_url,
        data_dir=tmp_path,
        env="test",
        jwt_secret="test-secret-" + "x" * 40,
        log_format="console",
        access_log=False,
        slow_query_ms=0,
    )


@pytest.fixture
async def casebook_app(casebook_settings: CasebookSettings) -> AsyncIterator[FastAPI]:
    db = Database(casebook_settings)
    try:
        await upgrade(db, MIGRATIONS)
        await seed(db, transactions=SEED_TRANSACTIONS)
    finally:
        await db.dispose()
    app = create_app(casebook_settings)
    yield app
    services = app.state.services
    services.passwords.close()  # what the lifespan would do, had the app been started
    await services.limiter.close()
    await services.db.dispose()


@pytest.fixture
async def worker(casebook_app: FastAPI) -> AsyncIterator[None]:
    """A job worker for the test's duration, as ``casebook serve`` or ``casebook worker``."""
    async with casebook_app.state.services.worker(poll_interval=0.05, lease=30):
        yield


@pytest.fixture
async def login(casebook_app: FastAPI) -> AsyncIterator[Login]:
    """``await login("analyst@acme.test")`` → an httpx client carrying that user's token."""
    clients: list[httpx.AsyncClient] = []

    async def _login(email: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=casebook_app), base_url="http://casebook.test"
        )
        clients.append(client)
        response = await client.post(
            "/api/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD}
        )
        assert response.status_code == 200, response.text
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return client

    yield _login
    for client in clients:
        await client.aclose()


@pytest.fixture
async def anonymous(casebook_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=casebook_app), base_url="http://casebook.test"
    ) as client:
        yield client


@dataclass
class Served:
    """A ``casebook serve`` process: its base URL, and how to stop it."""

    base: str
    proc: subprocess.Popen[bytes]
    log: Path  # its output (a file: a pipe nobody reads would fill and stall the server)

    def stop(self) -> tuple[int, str]:
        """SIGINT (a clean shutdown) if it still runs; its exit status and output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        return self.proc.returncode, self.log.read_text(errors="replace")


@contextlib.contextmanager
def start_server(
    directory: Path, *, seed: int = 200, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """``casebook serve`` (embedded mode, SQLite, seeded) in a process of its own, ready;
    stopped (SIGINT) on exit. ``env`` adds to the environment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [sys.executable, "-m", "casebook", "serve", "--port", str(port), "--seed", str(seed)]
    log = directory / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--data-dir", str(directory)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "LOCKSTEP_LOG_FORMAT": "json",
                "LOCKSTEP_JOBS_POLL_SECONDS": "0.1",
                **(env or {}),
            },
        )
    server = Served(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"{server.base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.05)  # noqa: sleep - polling a readiness probe of another process
        yield server
    finally:
        server.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``casebook serve`` (embedded mode, SQLite, seeded) in a process of its own, ready."""
    with start_server(tmp_path) as server:
        yield server
