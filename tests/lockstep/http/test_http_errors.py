"""The one error envelope for every error status, and the last-resort 500."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from lockstep.exceptions import (
    BadRequestError,
    ConfigurationError,
    ConflictError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
)
from lockstep.http import CatchAllMiddleware, error_response, install_observability
from lockstep.settings import Settings

MakeClient = Callable[..., httpx.AsyncClient]
Logs = Callable[[], list[dict[str, Any]]]

SECRET = "hunter2-secret-value"


class Login(BaseModel):
    username: str
    password: str
    age: int


def build_app(settings: Settings, log_stream: io.StringIO) -> FastAPI:
    app = FastAPI()

    @app.get("/bad")
    async def bad() -> None:
        raise BadRequestError("the cursor is not one this server issued")

    @app.get("/bad-http")
    async def bad_http() -> None:
        raise HTTPException(400, "bad things")

    @app.get("/login-required")
    async def login_required() -> None:
        raise HTTPException(401, "sign in first", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/forbidden")
    async def forbidden() -> None:
        raise PermissionDeniedError("reviewers only", details={"role": "reviewer"})

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/conflict")
    async def conflict() -> None:
        raise ConflictError("case number already used")

    @app.get("/stale")
    async def stale() -> None:
        raise PreconditionFailedError("someone else changed this case")

    @app.post("/login")
    async def login(body: Login) -> dict[str, str]:
        return {"user": body.username}

    @app.get("/slow-down")
    async def slow_down() -> None:
        raise RateLimitedError("too many exports", retry_after=17)

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, detail={"brew": "tea"})

    @app.get("/misconfigured")
    async def misconfigured() -> None:
        raise ConfigurationError("LOCKSTEP_REDIS_URL is required for this route")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"database password is {SECRET}")

    install_observability(app, settings, log_stream=log_stream)
    return app


@pytest.fixture
def client(
    http_settings: Settings, log_stream: io.StringIO, make_client: MakeClient
) -> httpx.AsyncClient:
    return make_client(build_app(http_settings, log_stream))


def envelope(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id", "details"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "message", "details"),
    [
        ("GET", "/bad", 400, "bad_request", "the cursor is not one this server issued", None),
        ("GET", "/bad-http", 400, "bad_request", "bad things", None),
        ("GET", "/login-required", 401, "unauthenticated", "sign in first", None),
        ("GET", "/forbidden", 403, "permission_denied", "reviewers only", {"role": "reviewer"}),
        ("GET", "/no/such/route", 404, "not_found", "Not Found", None),
        ("DELETE", "/items/1", 405, "method_not_allowed", "Method Not Allowed", None),
        ("GET", "/conflict", 409, "conflict", "case number already used", None),
        ("GET", "/stale", 412, "precondition_failed", "someone else changed this case", None),
        ("GET", "/slow-down", 429, "rate_limited", "too many exports", None),
        ("GET", "/teapot", 418, "http_418", "I'm a Teapot", {"brew": "tea"}),
    ],
)
async def test_error_statuses_use_the_envelope(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    status: int,
    code: str,
    message: str,
    details: Any,
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    error = envelope(response)
    assert (error["code"], error["message"], error["details"]) == (code, message, details)


async def test_headers_of_the_exception_are_kept(client: httpx.AsyncClient) -> None:
    assert (await client.get("/login-required")).headers["www-authenticate"] == "Bearer"
    assert (await client.delete("/items/1")).headers["allow"] == "GET"
    assert (await client.get("/slow-down")).headers["retry-after"] == "17"


async def test_validation_errors_list_fields_without_echoing_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/login", json={"username": "ana", "password": 12, "age": SECRET})
    assert response.status_code == 422
    error = envelope(response)
    assert error["code"] == "validation_error"
    assert error["details"] == [
        {
            "loc": ["body", "password"],
            "msg": "Input should be a valid string",
            "type": "string_type",
        },
        {
            "loc": ["body", "age"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
    ]
    assert SECRET not in response.text


async def test_path_parameter_validation_uses_the_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/abc")
    assert response.status_code == 422
    assert envelope(response)["details"][0]["loc"] == ["path", "item_id"]


async def test_unhandled_exception_is_a_500_envelope_without_internals(
    client: httpx.AsyncClient, read_logs: Logs
) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    error = envelope(response)
    assert (error["code"], error["message"], error["details"]) == (
        "internal_error",
        "Internal server error",
        None,
    )
    for leaked in (SECRET, "RuntimeError", "Traceback", "boom", ".py"):
        assert leaked not in response.text
    [logged] = [line for line in read_logs() if line["event"] == "unhandled_error"]
    assert logged["level"] == "error"
    assert (logged["method"], logged["path"]) == ("GET", "/boom")
    assert "Traceback" in logged["exception"]
    assert SECRET in logged["exception"]


async def test_server_side_lockstep_errors_are_logged(
    client: httpx.AsyncClient, read_logs: Logs
) -> None:
    response = await client.get("/misconfigured")
    assert response.status_code == 500
    assert envelope(response)["code"] == "configuration_error"
    [logged] = [line for line in read_logs() if line["event"] == "lockstep_error"]
    assert (logged["code"], logged["status"]) == ("configuration_error", 500)


async def test_error_response_helper() -> None:
    response = error_response(
        409,
        "conflict",
        "taken",
        details={"field": "number"},
        headers={"X-Hint": "retry"},
        request_id="rid-1",
    )
    assert response.status_code == 409
    assert response.headers["x-hint"] == "retry"
    assert orjson.loads(response.body) == {
        "error": {
            "code": "conflict",
            "message": "taken",
            "request_id": "rid-1",
            "details": {"field": "number"},
        }
    }
    assert error_response(304, "not_modified", "unused").body == b""


async def test_unserializable_details_are_dropped_not_raised() -> None:
    response = error_response(400, "bad_request", "bad", details={"obj": object()}, request_id="r")
    assert orjson.loads(response.body)["error"]["details"] is None


# -- CatchAllMiddleware on its own, driven through raw ASGI ---------------------------------


async def call(app: Any, path: str = "/") -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    delivered = asyncio.Event()

    async def receive() -> Message:
        if delivered.is_set():
            await asyncio.Event().wait()  # a client that stays connected; cancelled by the app
        delivered.set()
        return {"type": "http.request", "body": b"", "more_body": False}

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [],
        "query_string": b"",
    }
    await app(scope, receive, send)
    return sent


async def test_catch_all_after_the_response_started_only_logs(
    http_settings: Settings, log_stream: io.StringIO, read_logs: Logs
) -> None:
    from lockstep.observability.logging import configure_logging

    configure_logging(http_settings, log_stream)

    async def chunks() -> Any:
        yield b"first chunk"
        raise RuntimeError("mid-stream failure")

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamingResponse(chunks())(scope, receive, send)

    sent = await call(CatchAllMiddleware(inner))  # does not raise
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
    assert [m.get("body") for m in sent[1:]] == [b"first chunk"]  # no second response
    [logged] = [line for line in read_logs() if line["event"] == "unhandled_error"]
    assert logged["response_started"] is True


async def test_catch_all_lets_cancellation_through() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await call(CatchAllMiddleware(inner))


async def test_catch_all_answers_500_when_nothing_was_sent() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("x")

    sent = await call(CatchAllMiddleware(inner))
    assert sent[0]["status"] == 500
    assert orjson.loads(sent[1]["body"])["error"]["code"] == "internal_error"
