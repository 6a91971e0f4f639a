"""Per-request metrics and the access log, in one pure-ASGI layer.

Guarantees, for every ``http`` request:

* ``http_requests_total`` and ``http_request_duration_seconds`` are updated once, labelled
  by the route *template* (``/items/{item_id}``, ``/admin/items/{id}`` through a mount, never
  the raw path and never the server's ``root_path``); requests no route matched share the
  label ``<unmatched>``; unknown methods share ``OTHER``.
* An exception escaping the inner app is counted (and logged) as status 500, then re-raised
  for the error middleware outside or the server. A cancelled request (``BaseException``)
  is not counted: it has no status.
* With ``access_log``, one ``request`` line per request: method, route, path (no query
  string), status, duration_ms. No headers, no query strings: both can carry secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.http.route_template import RouteTemplates
from lockstep.observability.metrics import HttpMetrics


class MetricsMiddleware:
    """Record :class:`HttpMetrics` (and optionally an access log line) for each request.

    ``access_logger`` is a bound structlog logger (``LoggingSetup.direct_logger`` is the
    cheap one); ``None`` disables the access log. ``access_log_exclude`` lists route
    templates that are counted but not logged (probes hit every few seconds).
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: HttpMetrics,
        access_logger: Any = None,
        access_log_exclude: Collection[str] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates()
        self._exclude = frozenset(access_log_exclude)
        self._log: Any = None
        if access_logger is not None:
            # Decided once: when INFO is filtered out the request path makes no logging call.
            is_enabled_for = getattr(access_logger, "is_enabled_for", None)
            if is_enabled_for is None or is_enabled_for(logging.INFO):
                self._log = access_logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = perf_counter()
        root_path = scope.get("root_path", "")
        status = 500  # an app that returns without responding gets a 500 from the server

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        except Exception:
            self._record(scope, root_path, 500, started)
            raise
        self._record(scope, root_path, status, started)

    def _record(self, scope: Scope, root_path: str, status: int, started: float) -> None:
        seconds = perf_counter() - started
        method: str = scope["method"]
        route = self.templates.resolve(scope, root_path, status)
        self.metrics.observe(method, route, status, seconds)
        if self._log is not None and route not in self._exclude:
            self._log.info(
                "request",
                method=method,
                route=route,
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
