"""Metrics by route template — routers, mounts, root_path, unmatched, exceptions — in an
injectable registry, plus the access log folded into the same layer. [requirement 17]"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from lockstep.http import UNMATCHED, MetricsMiddleware, install_observability
from lockstep.observability.metrics import HttpMetrics
from lockstep.settings import Settings, load_settings

MakeClient = Callable[..., httpx.AsyncClient]
Logs = Callable[[], list[dict[str, Any]]]


def count(registry: CollectorRegistry, method: str, route: str, status: int) -> float:
    labels = {"method": method, "route": route, "status": str(status)}
    return registry.get_sample_value("http_requests_total", labels) or 0.0


def observed(registry: CollectorRegistry, method: str, route: str) -> float:
    labels = {"method": method, "route": route}
    return registry.get_sample_value("http_request_duration_seconds_count", labels) or 0.0


async def text(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("x")


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/files/{name:path}")
    async def file(name: str) -> dict[str, str]:
        return {"name": name}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    users = APIRouter(prefix="/users")

    @users.get("/{uid}")
    async def user(uid: int) -> dict[str, int]:
        return {"uid": uid}

    v1 = APIRouter(prefix="/v1")
    v1.include_router(users)
    app.include_router(v1)

    admin = FastAPI()

    @admin.get("/things/{tid}")
    async def thing(tid: int) -> dict[str, int]:
        return {"tid": tid}

    app.mount("/admin", admin)

    tenant = FastAPI()

    @tenant.get("/cases/{cid}")
    async def case(cid: int) -> dict[str, int]:
        return {"cid": cid}

    app.mount("/tenants/{tenant_id}", tenant)
    app.mount("/legacy", Starlette(routes=[Route("/pages/{slug}", text)]))

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("raw")(scope, receive, send)

    app.mount("/raw", raw)
    return app


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def app(http_settings: Settings, log_stream: io.StringIO, registry: CollectorRegistry) -> FastAPI:
    app = build_app()
    install_observability(app, http_settings, registry=registry, log_stream=log_stream)
    return app


async def test_path_parameters_collapse_to_the_template(
    app: FastAPI, registry: CollectorRegistry, make_client: MakeClient
) -> None:
    client = make_client(app)
    for item_id in (1, 2, 3):
        assert (await client.get(f"/items/{item_id}?token=secret")).status_code == 200
    assert (await client.get("/files/a/b/c.txt")).status_code == 200
    assert count(registry, "GET", "/items/{item_id}", 200) == 3
    assert observed(registry, "GET", "/items/{item_id}") == 3
    assert count(registry, "GET", "/files/{name}", 200) == 1
    exposition = generate_latest(registry).decode()
    for raw in ("/items/1", "/items/2", "a/b/c.txt", "secret"):
        assert raw not in exposition


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/users/7", "/v1/users/{uid}"),
        ("/admin/things/9", "/admin/things/{tid}"),
        ("/tenants/3/cases/4", "/tenants/{tenant_id}/cases/{cid}"),
        ("/legacy/pages/about", "/legacy/pages/{slug}"),
        ("/raw/anything/at/all", "/raw/{path}"),
        ("/health", "/health"),
    ],
)
async def test_routers_and_mounts_use_the_full_template(
    app: FastAPI, registry: CollectorRegistry, make_client: MakeClient, path: str, template: str
) -> None:
    client = make_client(app)
    assert (await client.get(path)).status_code == 200
    assert (await client.get(path)).status_code == 200
    assert count(registry, "GET", template, 200) == 2


async def test_mount_with_parameters_is_one_series_for_all_values(
    app: FastAPI, registry: CollectorRegistry, make_client: MakeClient
) -> None:
    client = make_client(app)
    for tenant in range(5):
        assert (await client.get(f"/tenants/{tenant}/cases/1")).status_code == 200
    assert count(registry, "GET", "/tenants/{tenant_id}/cases/{cid}", 200) == 5


async def test_root_path_is_not_part_of_the_template(
    app: FastAPI, registry: CollectorRegistry, make_client: MakeClient
) -> None:
    client = make_client(app, root_path="/api")
    assert (await client.get("/api/items/1")).status_code == 200
    assert (await client.get("/api/admin/things/2")).status_code == 200
    assert count(registry, "GET", "/items/{item_id}", 200) == 1
    assert count(registry, "GET", "/admin/things/{tid}", 200) == 1
    assert "/api" not in generate_latest(registry).decode()


async def test_unmatched_requests_share_one_label(
    app: FastAPI, registry: CollectorRegistry, make_client: MakeClient
) -> None:
    client = make_client(app)
    for path in ("/nope", "/wp-login.php", "/admin/nope", "/legacy/nope", "/tenants/1/nope"):
        assert (await client.get(path)).status_code == 404
    assert count(registry, "GET", UNMATCHED, 404) == 5
    exposition = generate_latest(registry).decode()
    assert "wp-login" not in exposition
    assert "nope" not in exposition


async def test_wrong_method_is_counted_on_the_route(
    app: FastAPI, registry: CollectorRegistry, make_client: MakeClient
) -> None:
    assert (await make_client(app).post("/items/1")).status_code == 405
    assert count(registry, "POST", "/items/{item_id}", 405) == 1


async def test_unknown_methods_share_one_label(
    app: FastAPI, registry: CollectorRegistry, make_client: MakeClient
) -> None:
    client = make_client(app)
    await client.request("FROBNICATE", "/items/1")
    await client.request("XYZZY", "/items/1")
    assert count(registry, "OTHER", "/items/{item_id}", 405) == 2


async def test_exception_counts_as_500(
    app: FastAPI, registry: CollectorRegistry, make_client: MakeClient
) -> None:
    assert (await make_client(app).get("/boom")).status_code == 500
    assert count(registry, "GET", "/boom", 500) == 1


async def test_exception_without_catch_all_is_counted_and_reraised(make_client: MakeClient) -> None:
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)
    app = build_app()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    with pytest.raises(RuntimeError, match="boom"):
        await make_client(app).get("/boom")
    assert count(registry, "GET", "/boom", 500) == 1


async def test_two_apps_keep_separate_registries(
    http_settings: Settings, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    first, second = build_app(), build_app()
    obs_first = install_observability(first, http_settings, log_stream=log_stream)
    obs_second = install_observability(second, http_settings, log_stream=log_stream)
    assert obs_first.registry is not obs_second.registry
    await make_client(first).get("/items/1")
    await make_client(first).get("/items/2")
    await make_client(second).get("/items/3")
    assert count(obs_first.registry, "GET", "/items/{item_id}", 200) == 2
    assert count(obs_second.registry, "GET", "/items/{item_id}", 200) == 1


async def test_starlette_app_and_namespace(make_client: MakeClient) -> None:
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry, namespace="casebook")
    app = Starlette(
        routes=[Route("/s/{key}", text), Mount("/m/{part}", routes=[Route("/leaf/{leaf}", text)])],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
    )
    client = make_client(app)
    assert (await client.get("/s/1")).status_code == 200
    assert (await client.get("/m/x/leaf/y")).status_code == 200
    assert (await client.get("/m/x/other")).status_code == 404
    labels = {"method": "GET", "status": "200"}
    assert (
        registry.get_sample_value("casebook_http_requests_total", {**labels, "route": "/s/{key}"})
        == 1
    )
    assert (
        registry.get_sample_value(
            "casebook_http_requests_total", {**labels, "route": "/m/{part}/leaf/{leaf}"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "casebook_http_requests_total", {"method": "GET", "status": "404", "route": UNMATCHED}
        )
        == 1
    )


# -- access log ------------------------------------------------------------------------------


async def test_access_log_line_per_request(
    app: FastAPI, make_client: MakeClient, read_logs: Logs
) -> None:
    client = make_client(app)
    await client.get("/items/5?api_key=supersecret", headers={"Authorization": "Bearer tok"})
    await client.get("/nope")
    await client.get("/health")  # probes are counted but not logged
    lines = [line for line in read_logs() if line["event"] == "request"]
    assert [(line["route"], line["path"], line["status"]) for line in lines] == [
        ("/items/{item_id}", "/items/5", 200),
        (UNMATCHED, "/nope", 404),
    ]
    first = lines[0]
    assert first["method"] == "GET"
    assert first["logger"] == "lockstep.access"
    assert first["level"] == "info"
    assert isinstance(first["duration_ms"], float)
    assert first["request_id"]
    for line in lines:
        assert "supersecret" not in str(line)
        assert "Bearer" not in str(line)


@pytest.mark.parametrize("overrides", [{"access_log": False}, {"log_level": "WARNING"}])
async def test_access_log_off(
    tmp_path: object, log_stream: io.StringIO, make_client: MakeClient, overrides: dict[str, Any]
) -> None:
    app = build_app()
    settings = load_settings(data_dir=tmp_path, log_format="json", **overrides)
    obs = install_observability(app, settings, log_stream=log_stream)
    await make_client(app).get("/items/1")
    assert '"request"' not in log_stream.getvalue()
    assert count(obs.registry, "GET", "/items/{item_id}", 200) == 1
