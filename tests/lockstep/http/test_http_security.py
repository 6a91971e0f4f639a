"""Security headers: on every response (errors included), never overriding the app's own."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import Response

from lockstep.http import SecurityHeadersMiddleware, install_observability, security_headers
from lockstep.http.security import DEFAULT_CSP
from lockstep.settings import Settings, load_settings

MakeClient = Callable[..., httpx.AsyncClient]

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "cross-origin-opener-policy": "same-origin",
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'self'",
}


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/embeddable")
    async def embeddable() -> Response:
        return Response(
            b"<p>widget</p>",
            media_type="text/html",
            headers={
                "X-Frame-Options": "SAMEORIGIN",
                "Content-Security-Policy": "frame-ancestors https://partner.example",
            },
        )

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return app


@pytest.mark.parametrize(("path", "status"), [("/plain", 200), ("/missing", 404), ("/boom", 500)])
async def test_headers_on_every_response(
    http_settings: Settings,
    log_stream: io.StringIO,
    make_client: MakeClient,
    path: str,
    status: int,
) -> None:
    app = build_app()
    install_observability(app, http_settings, log_stream=log_stream)
    response = await make_client(app).get(path)
    assert response.status_code == status
    for name, value in EXPECTED.items():
        assert response.headers.get_list(name) == [value]
    assert "strict-transport-security" not in response.headers


async def test_app_headers_win_and_are_not_duplicated(
    http_settings: Settings, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    app = build_app()
    install_observability(app, http_settings, log_stream=log_stream)
    response = await make_client(app).get("/embeddable")
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers.get_list("content-security-policy") == [
        "frame-ancestors https://partner.example"
    ]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_hsts_from_settings(
    tmp_path: object, log_stream: io.StringIO, make_client: MakeClient
) -> None:
    app = build_app()
    settings = load_settings(data_dir=tmp_path, log_format="json", hsts_seconds=31_536_000)
    install_observability(app, settings, log_stream=log_stream)
    response = await make_client(app).get("/plain")
    assert response.headers["strict-transport-security"] == "max-age=31536000"


async def test_csp_override_and_omission(make_client: MakeClient) -> None:
    custom = SecurityHeadersMiddleware(build_app(), content_security_policy="default-src 'none'")
    response = await make_client(custom).get("/plain")
    assert response.headers["content-security-policy"] == "default-src 'none'"

    without = SecurityHeadersMiddleware(build_app(), content_security_policy=None)
    response = await make_client(without).get("/plain")
    assert "content-security-policy" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


def test_security_headers_list() -> None:
    assert dict(security_headers()) == {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Content-Security-Policy": DEFAULT_CSP,
    }
    assert ("Strict-Transport-Security", "max-age=60") in security_headers(hsts_seconds=60)
