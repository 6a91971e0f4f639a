"""Per-request metrics and the access log: :class:`RequestRecorder` (shared with the fused
:class:`~lockstep.http.observability.ObservabilityMiddleware`) and :class:`MetricsMiddleware`.

Guarantees, for every ``http`` request:

* ``http_requests_total`` and ``http_request_duration_seconds`` are updated once, labelled
  by the route *template* (``/items/{item_id}``, ``/admin/items/{id}`` through a mount, never
  the raw path and never the server's ``root_path``); requests no route matched share the
  label ``<unmatched>``; unknown methods share ``OTHER``.
* An exception escaping the inner app is counted (and logged) as status 500, then re-raised
  for the error middleware outside or the server. A cancelled request (``BaseException``)
  is not counted: it has no status.
* With an access logger, one ``request`` line per request: method, route, path (no query
  string), status, duration_ms (rounded to 0.01). No headers, no query strings: both can
  carry secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from time import perf_counter_ns
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.http.route_template import RouteTemplates
from lockstep.observability.json_lines import JsonLineLogger
from lockstep.observability.metrics import HttpMetrics


class RequestRecorder:
    """Count, time and log one finished request: what :class:`MetricsMiddleware` and
    :class:`~lockstep.http.observability.ObservabilityMiddleware` do when a request ends.

    ``access_logger`` is anything with ``info(event, **fields)`` (and optionally
    ``is_enabled_for(level)``): ``LoggingSetup.access_logger`` is the cheap one; ``None``
    disables the access log. ``access_log_exclude`` lists route templates that are counted
    but not logged (probes hit every few seconds).
    """

    def __init__(
        self,
        metrics: HttpMetrics,
        access_logger: Any = None,
        access_log_exclude: Collection[str] = (),
    ) -> None:
        self.metrics = metrics
        self.templates = RouteTemplates()
        self.access_log_exclude = frozenset(access_log_exclude)
        self.write_access_line: AccessLineWriter | None = None
        """``write_access_line(method, route, path, status, duration_ms)``; ``None`` when
        there is no access log or INFO is filtered out (decided once: the request path then
        makes no logging call)."""
        if access_logger is not None:
            is_enabled_for = getattr(access_logger, "is_enabled_for", None)
            if is_enabled_for is None or is_enabled_for(logging.INFO):
                self.write_access_line = access_line_writer(access_logger)

    def record(self, scope: Scope, root_path_before: str, status: int, started_ns: int) -> None:
        """Record a request that started at ``perf_counter_ns() == started_ns`` and ended now
        with ``status``; ``root_path_before`` is the scope's ``root_path`` before the app ran."""
        elapsed_ns = perf_counter_ns() - started_ns
        method: str = scope["method"]
        route = self.templates.resolve(scope, root_path_before, status)
        self.metrics.observe(method, route, status, elapsed_ns / 1e9)
        if self.write_access_line is not None and route not in self.access_log_exclude:
            self.write_access_line(method, route, scope["path"], status, duration_ms(elapsed_ns))


def duration_ms(elapsed_ns: int) -> float:
    """Nanoseconds as milliseconds rounded to 0.01 (in integers: cheaper than ``round``)."""
    return (elapsed_ns + 5_000) // 10_000 / 100


AccessLineWriter = Callable[[str, str, str, int, float], None]
"""``(method, route, path, status, duration_ms) -> None``: writes one access line."""


def access_line_writer(access_logger: Any) -> AccessLineWriter:
    """How to write access lines with ``access_logger``: a ``JsonLineLogger``'s ``request``
    (positional, the cheap path), any other logger's ``info("request", **fields)``."""
    if isinstance(access_logger, JsonLineLogger):
        return access_logger.request

    def write(method: str, route: str, path: str, status: int, duration_ms: float) -> None:
        access_logger.info(
            "request",
            method=method,
            route=route,
            path=path,
            status=status,
            duration_ms=duration_ms,
        )

    return write


class MetricsMiddleware:
    """Record :class:`HttpMetrics` (and optionally an access log line) for each request.

    ``access_logger`` and ``access_log_exclude``: see :class:`RequestRecorder`.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: HttpMetrics,
        access_logger: Any = None,
        access_log_exclude: Collection[str] = (),
    ) -> None:
        self.app = app
        self.recorder = RequestRecorder(metrics, access_logger, access_log_exclude)
        self.metrics = metrics
        self.templates = self.recorder.templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = perf_counter_ns()
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
            self.recorder.record(scope, root_path, 500, started)
            raise
        self.recorder.record(scope, root_path, status, started)
