"""The whole observability stack as one pure-ASGI layer: what ``install_observability`` adds.

:class:`ObservabilityMiddleware` behaves exactly like this stack of the separate classes
(which stay public for apps that assemble their own), outermost first::

    RequestIdMiddleware        every response, even the last-resort 500, carries the id
    MetricsMiddleware          sees the final status (500 included) and the total duration
    SecurityHeadersMiddleware  headers on every response, error envelopes included
    CatchAllMiddleware         turns an escaped exception into the 500 envelope

but with one ``send`` wrapper, one ``try``, one pass over the response headers and one
call frame instead of four, which is most of the stack's cost on a fast route.

Guarantees, for every ``http`` request (other scope types pass through untouched):

* The request id is the client's ``request_id_header`` if valid (see
  :func:`~lockstep.http.request_id.incoming_request_id`), else a generated one; it is in
  ``scope["state"]["request_id"]``, in ``current_request_id()`` and on every log line until
  the request (background tasks included) is over.
* The response carries the id header (an app-set one is replaced, never duplicated) and
  the security headers the app did not set itself — 500 envelopes included.
* An exception escaping the app is logged as ``unhandled_error`` with its traceback and,
  if no response started, answered with the 500 ``internal_error`` envelope; it is not
  re-raised. ``BaseException`` (cancellation) passes and the request is not counted.
* The request is counted and timed once, by route template and final status, and (with an
  access logger) logged as one ``request`` line carrying the id — after the response and
  background tasks, before the id is unbound.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from time import perf_counter_ns
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.http.errors import answer_unhandled_exception
from lockstep.http.metrics import RequestRecorder
from lockstep.http.request_id import DEFAULT_HEADER, Uuid4HexIds, accept_request_id
from lockstep.http.security import DEFAULT_CSP, encoded_security_headers
from lockstep.observability.metrics import HttpMetrics
from lockstep.observability.request_context import bind_request_id, reset_request_id

Header = tuple[bytes, bytes]


class ObservabilityMiddleware:
    """Request id, metrics and access log, security headers and the catch-all 500 in one.

    ``metrics``, ``access_logger``, ``access_log_exclude``: as for
    :class:`~lockstep.http.metrics.MetricsMiddleware`. ``request_id_header``,
    ``request_id_generator``: as ``header`` and ``generator`` of
    :class:`~lockstep.http.request_id.RequestIdMiddleware`. ``hsts_seconds``,
    ``content_security_policy``: as for
    :class:`~lockstep.http.security.SecurityHeadersMiddleware`.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: HttpMetrics,
        *,
        access_logger: Any = None,
        access_log_exclude: Collection[str] = (),
        request_id_header: str = DEFAULT_HEADER,
        request_id_generator: Callable[[], str] | None = None,
        hsts_seconds: int = 0,
        content_security_policy: str | None = DEFAULT_CSP,
    ) -> None:
        self.app = app
        self.recorder = RequestRecorder(metrics, access_logger, access_log_exclude)
        self.request_id_header = request_id_header
        self._id_key = request_id_header.lower().encode("latin-1")
        # A bound method is quicker to call than an instance with __call__.
        self._generator = request_id_generator or Uuid4HexIds().__call__
        # Encoded once. (A security header named like the id header would be replaced by
        # the id in the layered stack too.)
        self._security = tuple(
            header
            for header in encoded_security_headers(hsts_seconds, content_security_policy)
            if header[0] != self._id_key
        )
        # Response header names that need the slow path: none of them, usually.
        self._ours = frozenset(name for name, _ in self._security) | {self._id_key}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = perf_counter_ns()
        id_key = self._id_key
        for key, value in scope["headers"]:
            if key == id_key:  # lowercase in a scope; see incoming_request_id
                request_id = accept_request_id(value) or self._generator()
                break
        else:
            request_id = self._generator()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        root_path = scope.get("root_path", "")
        id_header = (id_key, request_id.encode("latin-1"))
        security = self._security
        ours = self._ours
        status = 0  # no response started yet

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                app_headers = message.get("headers") or ()
                for name, _ in app_headers:
                    if name.lower() in ours:
                        headers = self._merge_headers(app_headers, id_header)
                        break
                else:
                    headers = [*app_headers, *security, id_header]
                # A new message and list: the app may reuse its own across responses.
                message = {**message, "headers": headers}
            await send(message)

        token = bind_request_id(request_id)
        try:
            try:
                await self.app(scope, receive, send_observed)
            except Exception:
                await answer_unhandled_exception(scope, receive, send_observed, status != 0)
        except Exception:
            # Answering failed too (the client is gone): still one request, status 500.
            self.recorder.record(scope, root_path, 500, started)
            raise
        else:
            # RequestRecorder.record, inlined: the path every request takes.
            elapsed_ns = perf_counter_ns() - started
            status = status or 500  # 0: the app returned without responding; the server 500s
            recorder = self.recorder
            route = recorder.templates.resolve(scope, root_path, status)
            method = scope["method"]
            recorder.metrics.observe(method, route, status, elapsed_ns / 1e9)
            write_access_line = recorder.write_access_line
            if write_access_line is not None and route not in recorder.access_log_exclude:
                # duration_ms(elapsed_ns), inlined.
                duration = (elapsed_ns + 5_000) // 10_000 / 100
                write_access_line(method, route, scope["path"], status, duration)
        finally:
            reset_request_id(token)

    def _merge_headers(self, app_headers: Sequence[Header], id_header: Header) -> list[Header]:
        """The app's headers without its id header, our security headers it did not set,
        then the id (the layered stack's order)."""
        present = {name.lower() for name, _ in app_headers}
        id_key = self._id_key
        headers = [header for header in app_headers if header[0].lower() != id_key]
        headers.extend(header for header in self._security if header[0] not in present)
        headers.append(id_header)
        return headers
