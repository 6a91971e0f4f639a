"""The casebook application factory: ``create_app(settings)`` builds one independent app.

Nothing happens at import time; two apps with different settings can live in one process
(the tests rely on it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from casebook.api import (
    auth,
    cases,
    dashboard,
    imports,
    outbox,
    profiles,
    reports,
    subjects,
    transactions,
)
from casebook.api import jobs as jobs_api
from casebook.api import live as live_api
from casebook.services import Services
from casebook.settings import CasebookSettings
from lockstep import JSONBytesResponse, install_observability, load_settings


def create_app(settings: CasebookSettings | None = None) -> FastAPI:
    """Build the casebook API (and its small web UI) for ``settings``.

    The database schema must already be migrated (``casebook db upgrade``; ``casebook serve``
    does it for you in embedded mode).
    """
    settings = settings or load_settings(CasebookSettings)
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            services.lockstep.lifespan(app),
            services.offline.lifespan(app),
            services.realtime.lifespan(app),
            services.embedded_worker(),
        ):
            yield
        await services.db.dispose()

    app = FastAPI(
        title="casebook",
        version="0.1.0",
        summary="Forensic-finance case management, the lockstep reference application.",
        default_response_class=JSONBytesResponse,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    services.lockstep.install(app)
    readiness = {"redis": services.lockstep.ping_redis} if settings.redis_url else None
    install_observability(
        app,
        settings,
        database=services.db,
        readiness=readiness,
        registry=services.lockstep.registry,
    )
    for module in (auth, cases, subjects, transactions, dashboard, imports, profiles):
        app.include_router(module.router, prefix="/api/v1")
    for module in (reports, jobs_api, outbox):
        app.include_router(module.router, prefix="/api/v1")
    services.offline.install(app)  # GET /v1/shape, POST /sync/push
    app.include_router(live_api.router, prefix="/api/v1")
    services.realtime.install(app)  # /connection/websocket, /connection/uni_sse
    _mount_docs(app)
    if settings.serve_ui:
        _mount_ui(app)
    return app


STATIC = Path(__file__).parent / "static"
# Swagger UI loads its script and styles from a CDN and boots with an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    "https://fastapi.tiangolo.com; frame-ancestors 'none'"
)


def _mount_docs(app: FastAPI) -> None:
    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="casebook API")
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page


def _mount_ui(app: FastAPI) -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
