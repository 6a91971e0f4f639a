"""The one error envelope, the exception handlers that produce it, and the last-resort 500.

Every error response lockstep sends has this JSON body (``application/json``)::

    {"error": {"code": "not_found", "message": "...", "request_id": "...", "details": null}}

``code`` is stable and machine-readable; ``message`` is for people; ``details`` is
code-specific (a list of field errors for ``validation_error``) or ``null``. No error
response ever contains a stack trace or the text of an unexpected exception.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.db.availability import database_outage
from lockstep.exceptions import LockstepError
from lockstep.http.request_id import current_request_id
from lockstep.http.responses import json_default

log = structlog.get_logger("lockstep.http")

# Codes for HTTPExceptions raised by Starlette/FastAPI or by application code; they match
# the codes of the LockstepError subclasses so clients see one vocabulary.
STATUS_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    431: "headers_too_large",
    503: "service_unavailable",
}

INTERNAL_ERROR_CODE = "internal_error"
INTERNAL_ERROR_MESSAGE = "Internal server error"
# Field errors listed in a validation envelope: a body with 200,000 unknown keys must not
# become an 18 MB answer. The message says how many there were.
MAX_VALIDATION_ERRORS = 20


def error_code_for_status(status: int) -> str:
    """The envelope ``code`` for a bare HTTP status (``http_<status>`` when unnamed)."""
    return STATUS_CODES.get(status) or f"http_{status}"


def error_body(
    code: str, message: str, details: Any = None, request_id: str | None = None
) -> bytes:
    """The envelope as JSON bytes. Details that cannot be serialized are dropped (logged)."""
    error = {"code": code, "message": message, "request_id": request_id, "details": details}
    try:
        return orjson.dumps({"error": error}, default=json_default)
    except TypeError:
        log.warning("error_details_not_serializable", code=code)
        error["details"] = None
        return orjson.dumps({"error": error})


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> Response:
    """An envelope response. ``request_id`` defaults to the id of the current request."""
    if request_id is None:
        request_id = current_request_id()
    if status < 200 or status in (204, 304):
        # These statuses must not carry a body.
        return Response(status_code=status, headers=dict(headers or {}))
    body = error_body(code, message, details, request_id)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _request_id(request: Request) -> str | None:
    state = request.scope.get("state")
    if state and "request_id" in state:
        return str(state["request_id"])
    return current_request_id()


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if isinstance(exc.detail, str) and exc.detail:
        message, details = exc.detail, None
    else:
        message, details = _phrase(status), exc.detail
    headers = exc.headers
    if status == 405:
        # Starlette names the methods of the first route whose path matched; a resource
        # served by several routes (GET and PATCH /items/{id}) allows all of theirs.
        allowed = allowed_methods(request.app.router.routes, request.scope)
        if allowed:
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return error_response(
        status, error_code_for_status(status), message, details, headers, _request_id(request)
    )


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every standard method some route in ``routes`` fully matches at the scope's path
    (asked of each route, so included routers and mounts answer for their own routes)."""
    routes = list(routes)
    allowed = []
    for method in _METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return allowed


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def validation_details(errors: Any, limit: int = MAX_VALIDATION_ERRORS) -> list[dict[str, Any]]:
    """The first ``limit`` field errors as ``{loc, msg, type}``: the submitted ``input`` and
    the ``ctx``/``url`` extras are dropped so a rejected password or token is never echoed
    back."""
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in list(errors)[:limit]
    ]


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    message = "Request validation failed"
    if len(errors) > MAX_VALIDATION_ERRORS:
        message += f" ({MAX_VALIDATION_ERRORS} of {len(errors)} errors shown)"
    return error_response(
        422,
        "validation_error",
        message,
        validation_details(errors),
        request_id=_request_id(request),
    )


def retry_after_header(seconds: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds, rounded up: a client that waits exactly that long
    is not turned away again for want of a fraction of a second."""
    return {"Retry-After": str(max(math.ceil(seconds), 0))}


async def _lockstep_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LockstepError)
    headers = None
    if exc.retry_after is not None:
        headers = retry_after_header(exc.retry_after)
    if exc.status_code >= 500:
        # Deliberate, but still a server-side failure someone has to look at.
        log.error("lockstep_error", code=exc.code, status=exc.status_code, exc_info=exc)
    return error_response(
        exc.status_code, exc.code, exc.message, exc.details, headers, _request_id(request)
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every HTTPException, request validation error and LockstepError an envelope.

    Covers the 404 for unknown routes and the 405 for wrong methods (both HTTPExceptions).
    Unexpected exceptions are left to :class:`CatchAllMiddleware`.
    """
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(LockstepError, _lockstep_error)


async def answer_unhandled_exception(
    scope: Scope, receive: Receive, send: Send, response_started: bool
) -> None:
    """What :class:`CatchAllMiddleware` does with an exception; call it in an ``except`` block.

    Logs the exception being handled as ``unhandled_error`` (traceback, method, path,
    ``response_started``) and, unless the response has started, sends the 500
    ``internal_error`` envelope with the request's id through ``send``. An exception that
    says the database is unreachable, restarting or out of connections
    (:func:`~lockstep.db.database_outage`) is the database's state, not a bug: it is logged
    as ``database_unavailable`` (its type, no traceback) and answered with the 503
    ``database_unavailable`` envelope and ``Retry-After``.
    """
    exc = sys.exc_info()[1]
    outage = database_outage(exc) if exc is not None else None
    if outage is not None:
        log.warning(
            "database_unavailable",
            error=type(exc).__name__,
            method=scope.get("method"),
            path=scope.get("path"),
            response_started=response_started,
        )
    else:
        log.exception(
            "unhandled_error",
            method=scope.get("method"),
            path=scope.get("path"),
            response_started=response_started,
        )
    if response_started:
        return
    state = scope.get("state") or {}
    request_id = state.get("request_id") or current_request_id()
    if outage is not None:
        response = error_response(
            outage.status_code,
            outage.code,
            outage.message,
            headers=retry_after_header(outage.retry_after or 1),
            request_id=request_id,
        )
    else:
        response = error_response(
            500, INTERNAL_ERROR_CODE, INTERNAL_ERROR_MESSAGE, request_id=request_id
        )
    await response(scope, receive, send)


class CatchAllMiddleware:
    """Answer any exception escaping the app with a 500 envelope, and log it with traceback.

    Guarantees: the exception is logged as ``unhandled_error`` (with traceback, method and
    path); if no response has started, the client gets a 500 ``internal_error`` envelope
    that contains no exception text. If the response had already started, the exception is
    only logged and the server ends the connection. The exception is not re-raised (the
    server would print it a second time); ``BaseException`` such as cancellation passes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            await answer_unhandled_exception(scope, receive, send, started)
