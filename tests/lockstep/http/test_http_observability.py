"""ObservabilityMiddleware (what install_observability adds) does exactly what the stack of
separate classes does — RequestId ⟶ Metrics ⟶ SecurityHeaders ⟶ CatchAll — response by
response, log line by log line, count by count."""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException
from prometheus_client import CollectorRegistry
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.http import (
    CatchAllMiddleware,
    MetricsMiddleware,
    ObservabilityMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    current_request_id,
    install_error_handlers,
    install_observability,
)
from lockstep.observability.logging import LoggingSetup, configure_logging
from lockstep.observability.metrics import HttpMetrics
from lockstep.settings import Settings, load_settings

MakeClient = Callable[..., httpx.AsyncClient]
Exchange = tuple[int, list[tuple[str, str]], bytes, list[dict[str, Any]]]

HSTS = 600
EXCLUDED = ("/health",)


class ExplodingMiddleware:
    """Application middleware that fails on one path (inside the observability layer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/explode-in-middleware":
            raise ValueError("middleware failure")
        await self.app(scope, receive, send)


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"gen-{next(counter)}"


def routes(app: FastAPI) -> None:
    import structlog

    log = structlog.get_logger("app")

    @app.get("/items/{item_id}")
    async def item(item_id: int, background: BackgroundTasks) -> dict[str, int]:
        log.info("in_handler", item=item_id)
        background.add_task(lambda: log.info("in_background", rid=current_request_id()))
        return {"id": item_id}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/raise")
    async def fail() -> None:
        raise RuntimeError("handler failure")

    @app.get("/conflict")
    async def conflict() -> None:
        raise HTTPException(409, "taken", headers={"X-Hint": "retry"})

    @app.get("/own-headers")
    async def own_headers() -> Response:
        return Response(
            b"<p>x</p>",
            media_type="text/html",
            headers={
                "X-Request-ID": "from-app",
                "X-Frame-Options": "SAMEORIGIN",
                "Content-Security-Policy": "frame-ancestors https://partner.example",
            },
        )

    app.add_middleware(ExplodingMiddleware)
    install_error_handlers(app)


def fused_app(setup: LoggingSetup) -> tuple[FastAPI, HttpMetrics]:
    app = FastAPI()
    routes(app)
    metrics = HttpMetrics(CollectorRegistry())
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=metrics,
        access_logger=setup.access_logger("lockstep.access"),
        access_log_exclude=EXCLUDED,
        request_id_generator=ids(),
        hsts_seconds=HSTS,
    )
    return app, metrics


def layered_app(setup: LoggingSetup) -> tuple[FastAPI, HttpMetrics]:
    app = FastAPI()
    routes(app)
    metrics = HttpMetrics(CollectorRegistry())
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, hsts_seconds=HSTS)
    app.add_middleware(
        MetricsMiddleware,
        metrics=metrics,
        access_logger=setup.access_logger("lockstep.access"),
        access_log_exclude=EXCLUDED,
    )
    app.add_middleware(RequestIdMiddleware, generator=ids())
    return app, metrics


@pytest.fixture
def setup(http_settings: Settings, log_stream: io.StringIO) -> LoggingSetup:
    return configure_logging(http_settings, log_stream)


def normalized(line: dict[str, Any]) -> dict[str, Any]:
    # Timing differs between runs; a traceback names the frames of the layer that logged it.
    return {k: v for k, v in line.items() if k not in ("timestamp", "duration_ms", "exception")}


async def exchange(
    client: httpx.AsyncClient, stream: io.StringIO, path: str, headers: dict[str, str]
) -> Exchange:
    stream.seek(0)
    stream.truncate()
    response = await client.get(path, headers=headers)
    lines = [normalized(orjson.loads(line)) for line in stream.getvalue().splitlines()]
    # httpx logs each exchange itself, after the app returned.
    lines = [line for line in lines if line["logger"] != "httpx"]
    return response.status_code, response.headers.multi_items(), response.content, lines


CASES = [
    ("/items/1", {}),
    ("/items/2", {"X-Request-ID": "upstream-1"}),
    ("/items/3", {"X-Request-ID": "not a valid id"}),
    ("/items/not-a-number", {}),
    ("/nope", {}),
    ("/health", {}),
    ("/raise", {"X-Request-ID": "boom-1"}),
    ("/explode-in-middleware", {}),
    ("/conflict", {}),
    ("/own-headers", {"X-Request-ID": "ours"}),
]


async def test_fused_layer_matches_the_separate_classes(
    setup: LoggingSetup, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    fused, fused_metrics = fused_app(setup)
    layered, layered_metrics = layered_app(setup)
    fused_client, layered_client = make_client(fused), make_client(layered)
    for path, headers in CASES:
        expected = await exchange(layered_client, log_stream, path, headers)
        assert await exchange(fused_client, log_stream, path, headers) == expected, path

    def counts(metrics: HttpMetrics) -> list[tuple[str, dict[str, str], float]]:
        return [
            (sample.name, sample.labels, sample.value)
            for family in metrics.registry.collect()
            for sample in family.samples
            if sample.name.endswith(("_total", "_count"))
        ]

    assert counts(fused_metrics) == counts(layered_metrics)
    assert len(counts(fused_metrics)) > 10


async def test_order_of_effects_on_a_failing_request(
    setup: LoggingSetup, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    app, metrics = fused_app(setup)
    status, headers, body, lines = await exchange(
        make_client(app), log_stream, "/raise", {"X-Request-ID": "order-1"}
    )
    # The catch-all answered inside the id, security and metrics effects:
    assert status == 500
    assert orjson.loads(body)["error"]["request_id"] == "order-1"
    names = [name for name, _ in headers]
    assert names[-7:] == [
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "cross-origin-opener-policy",
        "content-security-policy",
        "strict-transport-security",
        "x-request-id",
    ]
    # ...the error is logged first, then the access line, both with the id.
    assert [(line["event"], line["request_id"]) for line in lines] == [
        ("unhandled_error", "order-1"),
        ("request", "order-1"),
    ]
    assert lines[1]["status"] == 500
    labels = {"method": "GET", "route": "/raise", "status": "500"}
    assert metrics.registry.get_sample_value("http_requests_total", labels) == 1
    assert current_request_id() is None


async def test_request_id_on_every_line_of_the_request(
    setup: LoggingSetup, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    app, _ = fused_app(setup)
    _, _, _, lines = await exchange(make_client(app), log_stream, "/items/7", {})
    assert [(line["event"], line["request_id"]) for line in lines] == [
        ("in_handler", "gen-1"),
        ("in_background", "gen-1"),
        ("request", "gen-1"),
    ]
    assert lines[1]["rid"] == "gen-1"  # current_request_id() in the background task


# -- at the ASGI level: what no HTTP client shows ---------------------------------------------


def both(inner: ASGIApp, setup: LoggingSetup) -> Iterator[tuple[str, ASGIApp, HttpMetrics]]:
    metrics = HttpMetrics(CollectorRegistry())
    logger = setup.access_logger("lockstep.access")
    yield (
        "fused",
        ObservabilityMiddleware(inner, metrics, access_logger=logger, request_id_generator=ids()),
        metrics,
    )
    metrics = HttpMetrics(CollectorRegistry())
    layered: ASGIApp = CatchAllMiddleware(inner)
    layered = SecurityHeadersMiddleware(layered)
    layered = MetricsMiddleware(layered, metrics, access_logger=logger)
    yield "layered", RequestIdMiddleware(layered, generator=ids()), metrics


def scope(path: str = "/x") -> Scope:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}


def recording() -> tuple[list[Message], Send]:
    """A server's send that keeps what it was given."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    return sent, send


def client() -> Receive:
    """A client that sends its request once and then stays connected."""
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # cancelled by the app when it is done
        delivered = True
        return {"type": "http.request", "body": b"", "more_body": False}

    return receive


def total(metrics: HttpMetrics, status: int) -> float | None:
    labels = {"method": "GET", "route": "<unmatched>", "status": str(status)}
    return metrics.registry.get_sample_value("http_requests_total", labels)


async def test_app_returning_without_a_response_counts_as_500(
    setup: LoggingSetup, log_stream: io.StringIO
) -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    for name, app, metrics in both(silent, setup):
        sent, send = recording()
        await app(scope(), client(), send)
        assert sent == [], name  # the server answers 500 itself
        assert total(metrics, 500) == 1, name


async def test_a_failing_send_is_counted_and_propagates(
    setup: LoggingSetup, log_stream: io.StringIO
) -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("app failure")

    async def send(message: Message) -> None:
        raise OSError("client went away")

    for name, app, metrics in both(failing, setup):
        with pytest.raises(OSError, match="client went away"):
            await app(scope(), client(), send)
        assert total(metrics, 500) == 1, name
        assert current_request_id() is None


async def test_cancellation_passes_and_is_not_counted(
    setup: LoggingSetup, log_stream: io.StringIO
) -> None:
    async def cancelled(scope: Scope, receive: Receive, send: Send) -> None:
        raise asyncio.CancelledError

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    for name, app, metrics in both(cancelled, setup):
        with pytest.raises(asyncio.CancelledError):
            await app(scope(), client(), send)
        assert total(metrics, 500) is None, name
        assert "request" not in log_stream.getvalue()


async def test_failure_after_the_response_started_only_logs(
    setup: LoggingSetup, log_stream: io.StringIO
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise RuntimeError("mid-stream failure")

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamingResponse(chunks())(scope, receive, send)

    results = []
    for name, app, metrics in both(streaming, setup):
        log_stream.seek(0)
        log_stream.truncate()
        sent, send = recording()
        await app(scope(), client(), send)  # does not raise
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        assert total(metrics, 200) == 1, name  # the status the client got
        lines = [normalized(orjson.loads(line)) for line in log_stream.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["unhandled_error", "request"], name
        assert lines[0]["response_started"] is True
        results.append((sent, lines))
    assert results[0] == results[1]


async def test_mixed_case_app_headers_are_not_duplicated(setup: LoggingSetup) -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"X-Request-ID", b"app"), (b"X-Frame-Options", b"SAMEORIGIN")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    results = []
    for _, app, _ in both(raw, setup):
        sent, send = recording()
        await app(scope(), client(), send)
        results.append(sent[0]["headers"])
    fused, layered = results
    assert fused == layered
    names = [name.lower() for name, _ in fused]
    assert names.count(b"x-request-id") == 1
    assert names.count(b"x-frame-options") == 1
    assert (b"X-Frame-Options", b"SAMEORIGIN") in fused


async def test_the_apps_message_and_header_list_are_not_modified(setup: LoggingSetup) -> None:
    app_headers = [(b"content-type", b"text/plain")]
    start = {"type": "http.response.start", "status": 200, "headers": app_headers}

    async def reusing(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b""})

    app = next(iter(both(reusing, setup)))[1]

    async def send(message: Message) -> None:
        return None

    await app(scope(), client(), send)
    await app(scope(), client(), send)
    assert start == {"type": "http.response.start", "status": 200, "headers": app_headers}
    assert app_headers == [(b"content-type", b"text/plain")]


async def test_non_http_scopes_pass_through_untouched(setup: LoggingSetup) -> None:
    received: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(scope)
        await send({"type": "websocket.close", "code": 1000})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    app = next(iter(both(inner, setup)))[1]
    ws: Scope = {"type": "websocket", "path": "/ws", "headers": []}
    await app(ws, client(), send)
    assert received == [{"type": "websocket", "path": "/ws", "headers": []}]
    assert sent == [{"type": "websocket.close", "code": 1000}]


async def test_console_format_writes_the_access_line_through_structlog(
    tmp_path: Path, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    app = FastAPI()
    routes(app)
    settings = load_settings(data_dir=tmp_path, log_format="console")
    install_observability(app, settings, log_stream=log_stream)
    await make_client(app).get("/items/3", headers={"X-Request-ID": "console-1"})
    [line] = [line for line in log_stream.getvalue().splitlines() if "/items/{item_id}" in line]
    assert "request" in line
    assert "console-1" in line
