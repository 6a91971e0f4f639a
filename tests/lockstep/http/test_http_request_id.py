"""Request ids: accepted when well-formed, replaced (and never logged raw) otherwise, echoed
on every response, visible to handlers, logs and background tasks. [requirement 19]"""

from __future__ import annotations

import io
import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import structlog
from fastapi import BackgroundTasks, FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

from lockstep.http import RequestIdMiddleware, current_request_id, install_observability
from lockstep.http.request_id import (
    Uuid4HexIds,
    incoming_request_id,
    is_valid_request_id,
    uuid4_hex,
)
from lockstep.settings import Settings

MakeClient = Callable[..., httpx.AsyncClient]
Logs = Callable[[], list[dict[str, Any]]]


def build_app(settings: Settings, log_stream: io.StringIO, seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    def record(label: str, request: Request | None = None) -> None:
        seen.append(
            {
                "where": label,
                "contextvar": current_request_id(),
                "state": getattr(request.state, "request_id", None) if request else None,
            }
        )
        structlog.get_logger("app").info("seen", where=label)

    @app.get("/items/{item_id}")
    async def item(item_id: int, request: Request, background: BackgroundTasks) -> dict[str, int]:
        record("handler", request)
        background.add_task(record, "background")
        return {"id": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    install_observability(app, settings, log_stream=log_stream)
    return app


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def app(http_settings: Settings, log_stream: io.StringIO, seen: list[dict[str, Any]]) -> FastAPI:
    return build_app(http_settings, log_stream, seen)


@pytest.mark.parametrize(
    "incoming",
    ["abc", "req-42_a.b:c@d/e+f=g", "0" * 128, "7f1c2a9e-4b1d-4c5e-9a7b-1d2e3f4a5b6c"],
)
async def test_valid_incoming_id_is_echoed(
    app: FastAPI, make_client: MakeClient, incoming: str
) -> None:
    response = await make_client(app).get("/items/1", headers={"X-Request-ID": incoming})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == incoming


async def test_missing_id_is_generated_as_uuid4_hex(app: FastAPI, make_client: MakeClient) -> None:
    client = make_client(app)
    first = (await client.get("/items/1")).headers["x-request-id"]
    second = (await client.get("/items/1")).headers["x-request-id"]
    assert first != second
    for value in (first, second):
        assert len(value) == 32
        assert uuid.UUID(hex=value).version == 4


@pytest.mark.parametrize(
    "hostile",
    ["has space", "x" * 129, "<script>alert(1)</script>", "tab\there", 'quote"d', "ünïcode"],
)
async def test_invalid_id_is_replaced_and_never_logged_raw(
    app: FastAPI, make_client: MakeClient, log_stream: io.StringIO, hostile: str
) -> None:
    raw = hostile.encode("utf-8")
    encoded = raw.decode("latin-1")  # what the middleware sees
    with structlog.testing.capture_logs() as captured:
        response = await make_client(app).get("/items/1", headers={"X-Request-ID": raw})
    assert response.status_code == 200
    replacement = response.headers["x-request-id"]
    assert replacement != encoded
    assert is_valid_request_id(replacement)
    rejected = [entry for entry in captured if entry["event"] == "request_id_rejected"]
    assert rejected == [
        {"event": "request_id_rejected", "length": len(encoded), "log_level": "info"}
    ]
    assert encoded not in repr(captured)
    assert encoded not in log_stream.getvalue()
    assert hostile not in log_stream.getvalue()


@pytest.mark.parametrize(
    ("path", "status"), [("/nope", 404), ("/items/not-a-number", 422), ("/boom", 500)]
)
async def test_id_is_on_error_responses_and_in_the_envelope(
    app: FastAPI, make_client: MakeClient, path: str, status: int
) -> None:
    response = await make_client(app).get(path, headers={"X-Request-ID": "trace-me"})
    assert response.status_code == status
    assert response.headers["x-request-id"] == "trace-me"
    assert response.json()["error"]["request_id"] == "trace-me"


async def test_handler_logs_and_background_tasks_see_the_id(
    app: FastAPI, make_client: MakeClient, seen: list[dict[str, Any]], read_logs: Logs
) -> None:
    response = await make_client(app).get("/items/1", headers={"X-Request-ID": "bg-1"})
    assert response.status_code == 200
    assert seen == [
        {"where": "handler", "contextvar": "bg-1", "state": "bg-1"},
        {"where": "background", "contextvar": "bg-1", "state": None},
    ]
    lines = [line for line in read_logs() if line["event"] == "seen"]
    assert [(line["where"], line["request_id"]) for line in lines] == [
        ("handler", "bg-1"),
        ("background", "bg-1"),
    ]
    # Restored once the request is over; structlog's own context is left to the app.
    assert current_request_id() is None
    assert "request_id" not in structlog.contextvars.get_contextvars()


async def test_log_lines_keep_the_id_when_the_app_clears_structlog_context(
    http_settings: Settings, log_stream: io.StringIO, make_client: MakeClient, read_logs: Logs
) -> None:
    app = FastAPI()

    @app.get("/")
    async def index() -> None:
        # What structlog's docs suggest doing at the start of each request.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(user="u-1")
        structlog.get_logger("app").info("handled")
        logging.getLogger("app.stdlib").warning("through the standard library")

    install_observability(app, http_settings, log_stream=log_stream)
    await make_client(app).get("/", headers={"X-Request-ID": "keep-1"})
    structlog.contextvars.clear_contextvars()
    events = {line["event"]: line for line in read_logs()}
    assert events["handled"]["request_id"] == "keep-1"
    assert events["handled"]["user"] == "u-1"
    assert events["through the standard library"]["request_id"] == "keep-1"
    # The access line is written in the same context, after the handler returned.
    assert (events["request"]["request_id"], events["request"]["user"]) == ("keep-1", "u-1")


async def test_access_log_and_error_log_carry_the_id(
    app: FastAPI, make_client: MakeClient, read_logs: Logs
) -> None:
    await make_client(app).get("/boom", headers={"X-Request-ID": "log-1"})
    events = {line["event"]: line for line in read_logs()}
    assert events["unhandled_error"]["request_id"] == "log-1"
    assert events["request"]["request_id"] == "log-1"


async def test_custom_generator_and_header(make_client: MakeClient) -> None:
    inner = FastAPI()

    @inner.get("/")
    async def index() -> dict[str, str | None]:
        return {"id": current_request_id()}

    ids = iter(["gen-1", "gen-2"])
    app = RequestIdMiddleware(inner, header="X-Correlation-ID", generator=lambda: next(ids))
    client = make_client(app)  # type: ignore[arg-type]
    first = await client.get("/")
    second = await client.get("/", headers={"X-Correlation-ID": "upstream"})
    assert (first.headers["x-correlation-id"], first.json()) == ("gen-1", {"id": "gen-1"})
    assert (second.headers["x-correlation-id"], second.json()) == ("upstream", {"id": "upstream"})
    assert "x-request-id" not in first.headers


async def test_app_set_id_header_is_replaced_not_duplicated(make_client: MakeClient) -> None:
    inner = FastAPI()

    @inner.get("/")
    async def index() -> Any:
        from starlette.responses import Response

        return Response(b"", headers={"X-Request-ID": "from-app"})

    client = make_client(RequestIdMiddleware(inner))  # type: ignore[arg-type]
    response = await client.get("/", headers={"X-Request-ID": "ours"})
    assert response.headers.get_list("x-request-id") == ["ours"]


async def test_non_http_scopes_pass_through_untouched() -> None:
    received: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(scope)
        await send({"type": "websocket.close", "code": 1000})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    scope: Scope = {"type": "websocket", "path": "/ws", "headers": []}
    await RequestIdMiddleware(inner)(scope, receive, send)
    assert received == [{"type": "websocket", "path": "/ws", "headers": []}]
    assert sent == [{"type": "websocket.close", "code": 1000}]


def test_default_generator_makes_valid_uuid4() -> None:
    values = {uuid4_hex() for _ in range(1000)}
    assert len(values) == 1000
    for value in values:
        parsed = uuid.UUID(hex=value)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert is_valid_request_id(value)


def test_read_ahead_generator_makes_unique_valid_uuid4s() -> None:
    generator = Uuid4HexIds(batch=16)
    values = [generator() for _ in range(1000)]  # many batches
    assert len(set(values)) == 1000
    for value in values:
        parsed = uuid.UUID(hex=value)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == value


def test_read_ahead_generator_never_repeats_across_threads() -> None:
    generator = Uuid4HexIds(batch=7)  # refills race often
    taken: list[list[str]] = [[] for _ in range(8)]

    def take(into: list[str]) -> None:
        into.extend(generator() for _ in range(500))

    threads = [threading.Thread(target=take, args=(into,)) for into in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [value for values in taken for value in values]
    assert len(flat) == len(set(flat)) == 4000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_discards_the_parents_read_ahead_ids() -> None:
    generator = Uuid4HexIds(batch=64)
    first = generator()  # the parent has 63 more read ahead
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        try:
            os.write(write_end, generator().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        child_id = pipe.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0
    assert is_valid_request_id(child_id)
    assert len(child_id) == 32
    parents = {first, *(generator() for _ in range(63))}
    assert child_id not in parents


def test_unlowercased_scope_header_names_are_not_ids() -> None:
    # ASGI servers lowercase header names (Starlette relies on it); the lookup does too.
    assert incoming_request_id([(b"X-Request-ID", b"abc")], b"x-request-id") is None
    assert incoming_request_id([(b"x-request-id", b"abc")], b"x-request-id") == "abc"
