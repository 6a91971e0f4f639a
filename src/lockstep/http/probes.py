"""``/health``, ``/ready`` and ``/metrics`` as plain Starlette routes (not in OpenAPI).

* ``GET /health`` — liveness: ``200 {"status":"ok"}`` whenever the process can answer. It
  checks nothing else, so a database outage never gets a healthy process restarted.
* ``GET /ready`` — readiness, meaning "can serve": runs every check concurrently (each
  bounded by a timeout). ``200 {"status":"ok","checks":{...}}`` when all pass; ``200`` with
  ``"status":"degraded"`` when only *informational* checks fail (a dependency the app
  serves without, such as a Redis cache that falls back to the database: a load balancer
  pulling every process off it would defeat the fallback); otherwise ``503`` with the
  error envelope, code ``not_ready``, ``details`` = every check's result (``"ok"`` or
  ``"fail: <ExceptionType>"``) and the failing required names in the message.
* ``GET /metrics`` — the Prometheus text exposition.

All three send ``Cache-Control: no-store``: a cached probe answer would report a state the
process may no longer be in.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lockstep.http.errors import error_response
from lockstep.observability.exposition import MetricsExposition
from lockstep.observability.health import DEFAULT_TIMEOUT, Check, run_checks

NO_STORE = {"Cache-Control": "no-store"}
HEALTH_PATH = "/health"
READY_PATH = "/ready"
METRICS_PATH = "/metrics"
PROBE_PATHS = frozenset({HEALTH_PATH, READY_PATH, METRICS_PATH})

_HEALTHY = orjson.dumps({"status": "ok"})


async def _health(_request: Request) -> Response:
    return Response(_HEALTHY, headers=NO_STORE, media_type="application/json")


def probe_routes(
    exposition: MetricsExposition,
    checks: Mapping[str, Check],
    timeout: float = DEFAULT_TIMEOUT,
    informational: Mapping[str, Check] | None = None,
) -> list[Route]:
    """The three probe routes, bound to ``exposition``, the readiness ``checks`` and the
    ``informational`` ones (reported, never failing readiness)."""
    frozen_checks = {**(informational or {}), **checks}
    optional = frozenset(informational or {}) - frozenset(checks)

    async def ready(_request: Request) -> Response:
        readiness = await run_checks(frozen_checks, timeout)
        required = [name for name in readiness.failing if name not in optional]
        if not required:
            status = "ok" if readiness.ok else "degraded"
            body = orjson.dumps({"status": status, "checks": dict(readiness.results)})
            return Response(body, headers=NO_STORE, media_type="application/json")
        return error_response(
            503,
            "not_ready",
            "not ready: " + ", ".join(required),
            details=dict(readiness.results),
            headers=NO_STORE,
        )

    async def metrics(_request: Request) -> Response:
        return Response(exposition.render(), headers=NO_STORE, media_type=exposition.content_type)

    return [
        Route(HEALTH_PATH, _health, methods=["GET"], include_in_schema=False),
        Route(READY_PATH, ready, methods=["GET"], include_in_schema=False),
        Route(METRICS_PATH, metrics, methods=["GET"], include_in_schema=False),
    ]
