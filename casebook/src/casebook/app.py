"""The casebook application factory: ``create_app(settings)`` builds one independent app.

Nothing happens at import time; two apps with different settings can live in one process
(the tests rely on it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import swagger_ui_bundle
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from casebook.api import (
    accounts,
    adjudication,
    audit,
    auth,
    cases,
    consent,
    counterparties,
    dashboard,
    imports,
    organization,
    outbox,
    profiles,
    reports,
    subjects,
    transactions,
    users,
)
from casebook.api import jobs as jobs_api
from casebook.api import live as live_api
from casebook.api.deps import bearer
from casebook.audit import ActingUser
from casebook.services import Services
from casebook.settings import CasebookSettings
from casebook.ui import mount_ui
from lockstep import (
    ClientAddress,
    JSONBytesResponse,
    RateLimitMiddleware,
    RequestLimitsMiddleware,
    install_observability,
    install_openapi,
    load_settings,
)

# The multipart envelope around an uploaded file (boundaries, part headers) is small.
MULTIPART_OVERHEAD = 64 * 1024


def _operation_id(route: APIRoute) -> str:
    """Operation ids are the endpoints' names (``get_case``): stable, and what OpenAPI
    links name."""
    return route.name


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
        services.passwords.close()
        await services.limiter.close()
        await services.db.dispose()

    app = FastAPI(
        title="casebook",
        version="0.1.0",
        summary="Forensic-finance case management, the lockstep reference application.",
        default_response_class=JSONBytesResponse,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=_operation_id,
    )
    app.state.services = services
    services.lockstep.install(app)
    if settings.rate_limits_enabled:
        # Outside the cache's answers before routing: a cached answer is a request too.
        app.add_middleware(
            RateLimitMiddleware,
            limiter=services.limiter,
            limits=settings.rate_limits(),
            identify=services.user,
            client_address=ClientAddress(settings.trusted_proxy_list),
        )
    # Writes are audited as the caller's (any request that may write, cached answers aside).
    app.add_middleware(ActingUser, user=services.user)
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        anonymous_max_body_bytes=settings.anonymous_max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        route_limits={
            "POST /api/v1/cases/{case_id}/imports": settings.import_max_bytes + MULTIPART_OVERHEAD
        },
        identify=services.identify,
    )
    # Readiness means "can serve": without Redis, requests are served from the database,
    # so Redis only fails readiness when the cache is configured to fail closed.
    redis = {"redis": services.lockstep.ping_redis} if settings.redis_url else {}
    install_observability(
        app,
        settings,
        database=services.db,
        readiness=redis if settings.cache_fail_closed else None,
        informational=None if settings.cache_fail_closed else redis,
        registry=services.lockstep.registry,
    )
    for module in (auth, cases, subjects, transactions, dashboard, imports, profiles):
        app.include_router(module.router, prefix="/api/v1")
    for module in (accounts, consent, counterparties):
        app.include_router(module.router, prefix="/api/v1")
    for module in (reports, jobs_api, outbox, adjudication, audit, users, organization):
        app.include_router(module.router, prefix="/api/v1")
    # GET /v1/shape, POST /sync/push, GET /v1/sync/scopes/{name} (in the OpenAPI: bearer)
    services.offline.install(app, scope_dependencies=[Depends(bearer)])
    app.include_router(users.people, prefix="/api/v1")
    app.include_router(live_api.router, prefix="/api/v1")
    services.realtime.install(app)  # /connection/websocket, /connection/uni_sse
    install_openapi(app, rate_limited=settings.rate_limits_enabled)
    _mount_docs(app)
    if settings.serve_ui:
        mount_ui(app, lockstep_module=services.offline.browser.module_url)
    return app


# Swagger UI comes from an installed package (swagger-ui-bundle-v2) and boots from a script
# file of ours: no CDN, no inline script. Its stylesheet embeds a few data: images.
DOCS_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'self'"
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>casebook API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
DOCS_INIT = (
    'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", '
    "deepLinking: true, persistAuthorization: false});\n"
)


def _mount_docs(app: FastAPI) -> None:
    headers = {"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE, headers=headers)

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(DOCS_INIT, media_type="text/javascript", headers=headers)

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs")
