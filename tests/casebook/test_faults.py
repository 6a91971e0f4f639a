"""Faults on real servers (issue #13): a PostgreSQL restart is a 503 with Retry-After, never
a 500, and service resumes by itself; with Redis down every request is served from the
database and readiness still says "can serve"; ``kill -9`` in the middle of an import leaves
nothing of it behind. Each test starts the servers it breaks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from casebook.app import create_app
from casebook.models import ImportRecord, ImportStatus, Transaction
from casebook.rollups import AGGREGATES
from casebook.seed import DEMO_PASSWORD, seed
from casebook.services import MIGRATIONS
from casebook.settings import CasebookSettings
from lockstep import Database, load_settings, upgrade
from lockstep.testing import PostgresServer, RedisServer

pytestmark = pytest.mark.postgres


def settings_for(url: str, data_dir: Path, **overrides: object) -> CasebookSettings:
    return load_settings(
        CasebookSettings,
        database_url=url,
        data_dir=data_dir,
        env="test",
        jwt_secret="faults-" + "x" * 40,
        log_format="console",
        access_log=False,
        slow_query_ms=0,
        db_pool_timeout=2,
        **overrides,
    )


@pytest.fixture
async def app_on(own_postgres: PostgresServer, tmp_path: Path) -> AsyncIterator[object]:
    """``await app_on(**settings)``: casebook on a seeded database of ``own_postgres``, and a
    client signed in as the analyst."""
    apps: list[FastAPI] = []

    async def build(**overrides: object) -> tuple[FastAPI, httpx.AsyncClient]:
        url = own_postgres.create_database(f"faults_{len(apps)}")
        settings = settings_for(url, tmp_path, **overrides)
        db = Database(settings)
        try:
            await upgrade(db, MIGRATIONS)
            await seed(db, transactions=200)
        finally:
            await db.dispose()
        app = create_app(settings)
        apps.append(app)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb")
        token = await client.post(
            "/api/v1/auth/token",
            data={"username": "analyst@acme.test", "password": DEMO_PASSWORD},
        )
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        return app, client

    yield build
    for app in apps:
        app.state.services.passwords.close()
        await app.state.services.limiter.close()
        await app.state.services.db.dispose()


async def test_a_postgres_restart_is_503_with_retry_after_then_service_resumes(
    app_on: object, own_postgres: PostgresServer
) -> None:
    app, client = await app_on()  # type: ignore[operator]
    async with app.router.lifespan_context(app):
        assert (await client.get("/api/v1/outbox")).status_code == 200
        await asyncio.to_thread(own_postgres.stop)
        requests = [
            client.get("/api/v1/outbox"),  # not cached: needs the database
            client.get("/api/v1/auth/me"),
            client.post("/api/v1/cases", json={"reference": "DOWN-1", "title": "t"}),
        ]
        for response in [await request for request in requests]:
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "database_unavailable"
            assert response.headers["retry-after"] == "2"
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["details"]["database"].startswith("fail")
        assert (await client.get("/health")).status_code == 200
        await asyncio.to_thread(own_postgres.start)
        # The pool's pre-ping replaces the dead connections: the next requests are served.
        assert (await client.get("/api/v1/outbox")).status_code == 200
        created = await client.post("/api/v1/cases", json={"reference": "UP-1", "title": "t"})
        assert created.status_code == 201, created.text
        assert (await client.get("/ready")).status_code == 200


async def test_with_redis_down_requests_are_served_and_ready_says_so(
    app_on: object, own_redis: RedisServer
) -> None:
    app, client = await app_on(redis_url=own_redis.url(), redis_timeout=0.3)  # type: ignore[operator]
    async with app.router.lifespan_context(app):
        assert (await client.get("/api/v1/cases/1")).status_code == 200
        ready = await client.get("/ready")
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
        await asyncio.to_thread(own_redis.kill)
        for path in ("/api/v1/cases/1", "/api/v1/cases", "/api/v1/dashboard/summary"):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)
        renamed = await client.patch("/api/v1/cases/1", json={"title": "while Redis was down"})
        assert renamed.status_code == 200
        assert (await client.get("/api/v1/cases/1")).json()["title"] == "while Redis was down"
        # Readiness means "can serve": a load balancer must not pull this process.
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"].startswith("fail")
        assert ready.json()["checks"]["database"] == "ok"


async def test_with_a_cache_that_fails_closed_redis_down_is_not_ready(
    app_on: object, own_redis: RedisServer
) -> None:
    app, client = await app_on(  # type: ignore[operator]
        redis_url=own_redis.url(), redis_timeout=0.3, cache_fail_closed=True
    )
    async with app.router.lifespan_context(app):
        await asyncio.to_thread(own_redis.kill)
        assert (await client.get("/ready")).status_code == 503


async def writing_rows(
    backend: str, db: Database, directory: Path, proc: subprocess.Popen[bytes]
) -> None:
    """Return once ``proc``'s import transaction holds written, uncommitted rows: SQLite's
    WAL, or PostgreSQL's heap of ``transactions``, has grown by megabytes of them. Polls the
    other process's progress, bounded."""

    async def size() -> int:
        if backend == "sqlite":
            wal = directory / "casebook.db-wal"
            return wal.stat().st_size if wal.exists() else 0
        async with db.reader() as session:
            return int(await session.scalar(text("SELECT pg_relation_size('transactions')")) or 0)

    start = await size()
    async with asyncio.timeout(120):
        while proc.poll() is None:
            if await size() > start + 4 * 1024 * 1024:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the import ended before it was killed: {proc.returncode}")


def big_statement(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("date,amount,direction,category,counterparty,description\n")
        for n in range(rows):
            out.write(f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d},{n % 997 + 1}.{n % 100:02d},")
            out.write(f"{'debit' if n % 3 else 'credit'},cat{n % 17},party {n % 101},row {n}\n")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_kill_9_during_an_import_leaves_nothing_half_imported(
    backend: str, own_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = (
        f"sqlite+aiosqlite:///{tmp_path / 'casebook.db'}"
        if backend == "sqlite"
        else own_postgres.create_database("kill_import")
    )
    settings = settings_for(url, tmp_path)
    db = Database(settings)
    AGGREGATES.install(db)
    try:
        await upgrade(db, MIGRATIONS)
        await seed(db, transactions=100)
        async with db.reader() as session:
            before = await session.scalar(select(func.count()).select_from(Transaction))
        statement = tmp_path / "statement.csv"
        big_statement(statement, 400_000)
        env = {
            **os.environ,
            "LOCKSTEP_DATABASE_URL": url,
            "LOCKSTEP_DATA_DIR": str(tmp_path),
            # A small page cache: SQLite spills the open transaction's pages to the WAL
            # early, which is how this test sees rows being written.
            "LOCKSTEP_SQLITE_WRITER_CACHE_MB": "2",
        }
        log = (tmp_path / "import.log").open("wb")
        proc = subprocess.Popen(  # noqa: ASYNC220 - started, never waited on, from the loop
            [sys.executable, "-m", "casebook", "import", str(statement), "--case", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        # Once the import has written rows into its open transaction, kill it outright.
        await writing_rows(backend, db, tmp_path, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
        assert proc.returncode == -signal.SIGKILL, (tmp_path / "import.log").read_text()
        async with db.reader() as session:
            after = await session.scalar(select(func.count()).select_from(Transaction))
            records = (await session.scalars(select(ImportRecord))).all()
        assert after == before  # not one row of the killed import
        assert all(r.status is not ImportStatus.IMPORTED for r in records)
        # The rollups were maintained in the same transaction: they match the ledger.
        for verification in await AGGREGATES.verify(db):
            assert verification.ok, verification
    finally:
        await db.dispose()
