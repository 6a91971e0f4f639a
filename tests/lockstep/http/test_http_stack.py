"""install_observability: the order of effects, proven from the outside (the fused layer's
equivalence with the separate classes is in test_http_observability.py)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from lockstep.exceptions import ConfigurationError
from lockstep.http import Observability, ObservabilityMiddleware, install_observability
from lockstep.settings import Settings, load_settings

MakeClient = Callable[..., httpx.AsyncClient]
Logs = Callable[[], list[dict[str, Any]]]


class ExplodingMiddleware:
    """Application middleware that fails on one path (added before install_observability)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/explode-in-middleware":
            raise ValueError("middleware failure")
        await self.app(scope, receive, send)


def build(settings: Settings, log_stream: io.StringIO) -> tuple[FastAPI, Observability]:
    app = FastAPI()

    @app.get("/raise")
    async def fail() -> None:
        raise RuntimeError("handler failure")

    app.add_middleware(ExplodingMiddleware)
    obs = install_observability(app, settings, log_stream=log_stream)
    return app, obs


def requests(registry: CollectorRegistry, route: str, status: int) -> float:
    labels = {"method": "GET", "route": route, "status": str(status)}
    return registry.get_sample_value("http_requests_total", labels) or 0.0


async def test_one_fused_layer_outside_the_apps_middleware(
    http_settings: Settings, log_stream: io.StringIO
) -> None:
    app, obs = build(http_settings, log_stream)
    assert [m.cls for m in app.user_middleware] == [ObservabilityMiddleware, ExplodingMiddleware]
    options = app.user_middleware[0].kwargs
    assert options["metrics"] is obs.metrics
    assert options["request_id_header"] == http_settings.request_id_header
    assert options["hsts_seconds"] == http_settings.hsts_seconds
    assert options["access_logger"] is not None


async def test_raising_route_gets_every_layer(
    http_settings: Settings, log_stream: io.StringIO, make_client: MakeClient, read_logs: Logs
) -> None:
    app, obs = build(http_settings, log_stream)
    response = await make_client(app).get("/raise", headers={"X-Request-ID": "order-1"})

    assert response.status_code == 500  # CatchAll answered
    assert response.json()["error"] == {  # the envelope, with RequestId's id
        "code": "internal_error",
        "message": "Internal server error",
        "request_id": "order-1",
        "details": None,
    }
    assert response.headers["x-request-id"] == "order-1"  # RequestId is outside CatchAll
    assert response.headers["x-frame-options"] == "DENY"  # SecurityHeaders is outside CatchAll
    assert requests(obs.registry, "/raise", 500) == 1  # Metrics saw the final status
    [access] = [line for line in read_logs() if line["event"] == "request"]
    assert (access["status"], access["route"], access["request_id"]) == (500, "/raise", "order-1")


async def test_failing_application_middleware_is_inside_the_stack(
    http_settings: Settings, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    app, obs = build(http_settings, log_stream)
    response = await make_client(app).get("/explode-in-middleware")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["x-request-id"] == response.json()["error"]["request_id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert requests(obs.registry, "<unmatched>", 500) == 1


async def test_observability_handle(http_settings: Settings, log_stream: io.StringIO) -> None:
    registry = CollectorRegistry()
    app = FastAPI()
    obs = install_observability(app, http_settings, registry=registry, log_stream=log_stream)
    assert obs.registry is registry
    assert obs.metrics.registry is registry
    assert obs.exposition.multiprocess_dir is None
    assert dict(obs.checks) == {}
    assert b"http_requests_total" in obs.exposition.render()


async def test_refuses_an_app_that_already_served(
    http_settings: Settings, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    app = FastAPI()
    await make_client(app).get("/")  # builds the middleware stack
    with pytest.raises(RuntimeError, match="before the app serves"):
        install_observability(app, http_settings, log_stream=log_stream)
    assert app.user_middleware == []


def test_bad_multiprocess_setup_leaves_the_app_untouched(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    app = FastAPI()
    routes_before = list(app.router.routes)
    settings = load_settings(data_dir=tmp_path, metrics_multiprocess_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="PROMETHEUS_MULTIPROC_DIR"):
        install_observability(app, settings, log_stream=log_stream)
    assert app.user_middleware == []
    assert app.router.routes == routes_before
