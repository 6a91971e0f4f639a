"""The one call an app factory makes to get request ids, errors, security headers, metrics,
access logs and probes, in the right order.

Layers, outermost first (a request passes them top to bottom)::

    ObservabilityMiddleware    one layer doing, in this order, what these would:
      RequestIdMiddleware        every response, even the last-resort 500, carries the id
      MetricsMiddleware          sees the final status (500 included) and the total duration
      SecurityHeadersMiddleware  headers on every response, error envelopes included
      CatchAllMiddleware         turns an escaped exception into the 500 envelope
    ...middleware the app added before install_observability...
    app (exception handlers: HTTPException / validation / LockstepError → envelope)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from lockstep.db import Database
from lockstep.http.errors import install_error_handlers
from lockstep.http.observability import ObservabilityMiddleware
from lockstep.http.probes import PROBE_PATHS, probe_routes
from lockstep.observability.exposition import MetricsExposition, multiprocess_dir
from lockstep.observability.health import Check
from lockstep.observability.logging import configure_logging
from lockstep.observability.metrics import DatabasePoolCollector, HttpMetrics
from lockstep.settings import Settings


@dataclass(frozen=True, slots=True)
class Observability:
    """What :func:`install_observability` built: inspect it in tests, extend it in apps."""

    registry: CollectorRegistry
    metrics: HttpMetrics
    exposition: MetricsExposition
    checks: Mapping[str, Check]


def install_observability(
    app: FastAPI,
    settings: Settings,
    *,
    database: Database | None = None,
    readiness: Mapping[str, Check] | None = None,
    informational: Mapping[str, Check] | None = None,
    registry: CollectorRegistry | None = None,
    log_stream: TextIO | None = None,
) -> Observability:
    """Configure logging and install the HTTP observability stack on ``app``.

    Call it after adding the app's own middleware (those end up inside the stack) and
    before the app serves its first request. ``registry`` defaults to a new registry (never
    the process-global one). With ``database``, ``/ready`` pings it (check ``database``) and
    ``db_pool_connections`` is exported. ``readiness`` adds named checks; ``informational``
    ones are reported by ``/ready`` but never make it fail (``"status": "degraded"``):
    dependencies the app serves without. Log lines go to
    ``log_stream`` (default: standard error).

    Raises :class:`~lockstep.exceptions.ConfigurationError` for an unusable multi-process
    metrics setup, and ``RuntimeError`` if the app has already started.
    """
    # Everything that can refuse is checked before the app is touched.
    if app.middleware_stack is not None:
        raise RuntimeError("install_observability must run before the app serves a request")
    metrics_dir = multiprocess_dir(settings)

    logging_setup = configure_logging(settings, log_stream)
    registry = registry if registry is not None else CollectorRegistry()
    metrics = HttpMetrics(registry)

    checks: dict[str, Check] = {}
    process_local = []
    if database is not None:
        checks["database"] = database.ping
        pool_collector = DatabasePoolCollector(database)
        registry.register(pool_collector)
        process_local.append(pool_collector)
    checks.update(readiness or {})
    exposition = MetricsExposition(
        registry, multiprocess_dir=metrics_dir, process_local=process_local
    )

    install_error_handlers(app)
    # Appended: requests try routes in order and the app's routes declared so far are the
    # hot ones. (A catch-all route declared before this call would shadow the probes.)
    app.router.routes.extend(
        probe_routes(exposition, checks, settings.readiness_timeout, informational)
    )

    # add_middleware inserts at the front: this ends up outside the app's own middleware.
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=metrics,
        access_logger=logging_setup.access_logger("lockstep.access")
        if settings.access_log
        else None,
        access_log_exclude=PROBE_PATHS,
        request_id_header=settings.request_id_header,
        hsts_seconds=settings.hsts_seconds,
    )
    return Observability(registry, metrics, exposition, checks)
