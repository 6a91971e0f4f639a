"""Request limits before the app reads anything, the 503 for a database outage, the Allow
header of a 405, capped validation errors, and an OpenAPI document that tells the truth."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import Receive, Scope, Send

from lockstep.db import database_outage
from lockstep.exceptions import DatabaseUnavailableError, OverloadedError
from lockstep.http import (
    RequestLimitsMiddleware,
    error_responses,
    file_response,
    install_observability,
    install_openapi,
    openapi_links,
    unbounded_integers,
)
from lockstep.settings import Settings


class Item(BaseModel):
    name: str
    count: int


def build_app(settings: Settings, **limits: Any) -> FastAPI:
    app = FastAPI()

    @app.post(
        "/items",
        status_code=201,
        responses={201: {"description": "ok", "links": openapi_links("item_id", "read")}},
    )
    async def create(item: Item) -> dict[str, Any]:
        return item.model_dump()

    @app.get("/items/{item_id}", operation_id="read", responses=error_responses(403))
    async def read(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.patch("/items/{item_id}")
    async def patch(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.get("/file", responses=file_response("application/pdf", "a file"))
    async def file() -> None:
        return None

    @app.get("/outage/{kind}")
    async def outage(kind: str) -> None:
        errors: dict[str, Exception] = {
            "pool": PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached"),
            "refused": ConnectionRefusedError(111, "Connection refused"),
            "lost": InterfaceError("SELECT 1", {}, Exception("connection is closed")),
            "bug": IntegrityError("INSERT", {}, Exception("duplicate key")),
            "busy": OperationalError("INSERT", {}, _sqlite_error("database is locked")),
            "schema": OperationalError("SELECT", {}, _sqlite_error("no such table: x")),
        }
        raise errors[kind]

    @app.get("/overloaded")
    async def overloaded() -> None:
        raise OverloadedError("busy", retry_after=0.2)

    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=limits.get("max_body_bytes", 100),
        anonymous_max_body_bytes=10,
        route_limits={"POST /upload": 1000},
        identify=lambda scope: "user" if (b"authorization", b"yes") in scope["headers"] else None,
    )
    install_observability(app, settings, log_stream=io.StringIO())
    install_openapi(app, rate_limited=True)
    return app


def _sqlite_error(message: str) -> Exception:
    import sqlite3

    return sqlite3.OperationalError(message)


@pytest.fixture
async def client(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(env="test", data_dir=tmp_path, log_format="console")
    app = build_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"Authorization": "yes"}
    ) as c:
        yield c


async def test_a_body_over_its_limit_is_413_by_its_length(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", content=b"x" * 101)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.json()["error"]["details"] == {"max_bytes": 100}
    ok = await client.post("/items", json={"name": "a", "count": 1})
    assert ok.status_code == 201


async def test_a_streamed_body_is_cut_off_at_its_limit(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 10

    response = await client.post("/items", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_routes_have_their_own_limits_and_anonymous_requests_a_small_one(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/upload", content=b"x" * 900)).json() == {"bytes": 900}
    assert (await client.post("/upload", content=b"x" * 1001)).status_code == 413
    anonymous = await client.post("/upload", content=b"x" * 11, headers={"Authorization": "no"})
    assert anonymous.status_code == 413


async def test_headers_over_their_limit_are_431(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/1", headers={"X-Big": "x" * 40_000})
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"
    assert (await client.get("/items/1", headers={"X-Fine": "x" * 20_000})).status_code == 200


async def test_a_nul_byte_in_the_url_is_400(client: httpx.AsyncClient) -> None:
    for url in ("/items/1?q=%00", "/items/%00"):
        response = await client.get(url)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_request"


async def test_an_app_that_does_not_map_http_errors_still_answers_413() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass

    app = RequestLimitsMiddleware(raw, max_body_bytes=5)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"123"
        yield b"456"

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.post("/", content=chunks())).status_code == 413


@pytest.mark.parametrize("kind", ["pool", "refused", "lost", "busy"])
async def test_a_database_outage_is_503_with_retry_after(
    client: httpx.AsyncClient, kind: str
) -> None:
    response = await client.get(f"/outage/{kind}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response.headers["retry-after"] == "2"
    assert "x-request-id" in response.headers


@pytest.mark.parametrize("kind", ["bug", "schema"])
async def test_a_database_error_that_is_a_bug_stays_500(
    client: httpx.AsyncClient, kind: str
) -> None:
    response = await client.get(f"/outage/{kind}")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"


def test_outages_are_found_through_the_cause_chain() -> None:
    try:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        found = database_outage(wrapped)
    assert isinstance(found, DatabaseUnavailableError)
    assert database_outage(ValueError("no")) is None


async def test_retry_after_is_rounded_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/overloaded")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


async def test_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.delete("/items/1")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PATCH"


async def test_validation_errors_are_capped_at_twenty() -> None:
    app = FastAPI()

    @app.get("/many")
    async def many_params(
        a0: int,
        a1: int,
        a2: int,
        a3: int,
        a4: int,
        a5: int,
        a6: int,
        a7: int,
        a8: int,
        a9: int,
        b0: int,
        b1: int,
        b2: int,
        b3: int,
        b4: int,
        b5: int,
        b6: int,
        b7: int,
        b8: int,
        b9: int,
        c0: int,
        c1: int,
    ) -> None:
        return None

    install_observability(app, Settings(env="test"), log_stream=io.StringIO())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        error = (await c.get("/many")).json()["error"]
    assert len(error["details"]) == 20
    assert error["message"] == "Request validation failed (20 of 22 errors shown)"


async def test_the_document_declares_the_envelope_for_every_error(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "Error" in schemas
    read = document["paths"]["/items/{item_id}"]["get"]["responses"]
    assert {"400", "403", "404", "422", "429", "503"} <= set(read)
    assert "Retry-After" in read["503"]["headers"]
    create = document["paths"]["/items"]["post"]["responses"]
    assert {"413", "422"} <= set(create)
    assert create["201"]["links"]["read"]["parameters"] == {"item_id": "$response.body#/id"}
    assert document["paths"]["/file"]["get"]["responses"]["200"]["content"] == {
        "application/pdf": {"schema": {"type": "string", "format": "binary"}}
    }
    # FastAPI's plain ints are unbounded: the check names each.
    assert set(unbounded_integers(document)) == {
        "GET /items/{item_id} item_id",
        "PATCH /items/{item_id} item_id",
        "POST /items body.Item.count",
    }
