"""/health, /ready (with a real database, reachable or not) and /metrics."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from lockstep.db import Database
from lockstep.http import install_observability
from lockstep.settings import Settings, load_settings

MakeClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db"))
    yield db
    await db.dispose()


@pytest.fixture
async def unreachable_database() -> AsyncIterator[Database]:
    # Nothing listens on port 1: the connection is refused at once.
    db = Database(
        load_settings(
            database_url="postgresql+asyncpg://lockstep@127.0.0.1:1/lockstep",
            db_connect_timeout=1.0,
        )
    )
    yield db
    await db.dispose()


def build(settings: Settings, log_stream: io.StringIO, **kwargs: object) -> FastAPI:
    app = FastAPI()
    install_observability(app, settings, log_stream=log_stream, **kwargs)  # type: ignore[arg-type]
    return app


async def test_health_is_always_ok(
    http_settings: Settings, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    response = await make_client(build(http_settings, log_stream)).get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"


async def test_health_stays_up_when_the_database_is_down(
    http_settings: Settings,
    log_stream: io.StringIO,
    make_client: MakeClient,
    unreachable_database: Database,
) -> None:
    app = build(http_settings, log_stream, database=unreachable_database)
    assert (await make_client(app).get("/health")).status_code == 200


async def test_ready_with_a_real_sqlite_database(
    http_settings: Settings,
    log_stream: io.StringIO,
    make_client: MakeClient,
    sqlite_database: Database,
) -> None:
    app = build(http_settings, log_stream, database=sqlite_database)
    response = await make_client(app).get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}
    assert response.headers["cache-control"] == "no-store"


async def test_ready_is_503_naming_an_unreachable_database(
    http_settings: Settings,
    log_stream: io.StringIO,
    make_client: MakeClient,
    unreachable_database: Database,
) -> None:
    app = build(http_settings, log_stream, database=unreachable_database)
    response = await make_client(app).get("/ready")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert error["message"] == "not ready: database"
    assert error["details"] == {"database": "fail: DatabaseUnavailableError"}
    assert error["request_id"] == response.headers["x-request-id"]
    assert response.headers["cache-control"] == "no-store"
    assert "127.0.0.1" not in response.text


async def test_ready_lists_only_the_failing_checks_in_the_message(
    http_settings: Settings,
    log_stream: io.StringIO,
    make_client: MakeClient,
    sqlite_database: Database,
) -> None:
    async def redis() -> None:
        raise ConnectionRefusedError("redis://:password@cache:6379")

    async def queue() -> None:
        return None

    app = build(
        http_settings,
        log_stream,
        database=sqlite_database,
        readiness={"redis": redis, "queue": queue},
    )
    response = await make_client(app).get("/ready")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["message"] == "not ready: redis"
    assert error["details"] == {
        "database": "ok",
        "redis": "fail: ConnectionRefusedError",
        "queue": "ok",
    }
    assert "password" not in response.text


async def test_metrics_exposition_with_pool_gauges(
    http_settings: Settings,
    log_stream: io.StringIO,
    make_client: MakeClient,
    sqlite_database: Database,
) -> None:
    app = build(http_settings, log_stream, database=sqlite_database)
    client = make_client(app)
    await client.get("/ready")  # opens a reader connection, returned to the pool idle
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    pool = {
        (sample.labels["pool"], sample.labels["state"]): sample.value
        for sample in families["db_pool_connections"].samples
    }
    assert set(pool) == {
        (role, state)
        for role in ("writer", "reader")
        for state in ("size", "checked_out", "idle", "overflow")
    }
    assert pool[("reader", "idle")] == 1
    assert pool[("reader", "checked_out")] == 0
    assert pool[("writer", "size")] == 1
    # The parser names counter families without "_total"; the samples keep it.
    ready = [
        sample.value
        for sample in families["http_requests"].samples
        if sample.name == "http_requests_total" and sample.labels["route"] == "/ready"
    ]
    assert ready == [1]


async def test_probes_are_not_in_the_openapi_schema(
    http_settings: Settings, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    app = build(http_settings, log_stream)

    @app.get("/items")
    async def items() -> list[int]:
        return []

    schema = (await make_client(app).get("/openapi.json")).json()
    assert set(schema["paths"]) == {"/items"}
