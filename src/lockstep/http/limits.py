"""Request limits enforced before the app reads anything: body size and the URL's bytes.

:class:`RequestLimitsMiddleware` guarantees, for every HTTP request:

* A body larger than its limit is refused with the 413 ``payload_too_large`` envelope: at
  once when ``Content-Length`` says so (nothing is read), otherwise as soon as the bytes
  received cross the limit (the app sees an exception from ``receive``, never the excess).
* The limit is ``max_body_bytes``, or the route's own (``route_limits``, keyed by
  ``"METHOD /path/{template}"``), or — for a request that ``identify(scope)`` does not
  authenticate — at most ``anonymous_max_body_bytes``: a client without a valid token
  cannot make the server read and parse 100 MB before it is told 401.
* A path or query string holding a NUL byte (``%00``) is refused with 400: no backend
  stores it the same way (PostgreSQL refuses it, SQLite keeps it).
* Request headers larger than ``max_header_bytes`` in all (names and values) are refused
  with 431 ``headers_too_large`` before the app sees them. uvicorn with httptools reads
  headers of any size; this keeps them from reaching the app (a proxy in front bounds
  what the server itself reads).

Limits are checked before routing, so they cost one header scan per request and nothing
per body chunk beyond a length sum.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.http.errors import error_response

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_ANONYMOUS_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_HEADER_BYTES = 32 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body crosses its limit (a 413 envelope)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class _RouteLimit:
    method: str
    pattern: re.Pattern[str]
    limit: int


class RequestLimitsMiddleware:
    """Refuse bodies over their limit (413) and NUL bytes in URLs (400); see the module."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        anonymous_max_body_bytes: int = DEFAULT_ANONYMOUS_MAX_BODY_BYTES,
        route_limits: Mapping[str, int] | None = None,
        identify: Callable[[Scope], Hashable | None] | None = None,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.anonymous_max_body_bytes = anonymous_max_body_bytes
        self.identify = identify
        self._routes = [_route_limit(spec, limit) for spec, limit in (route_limits or {}).items()]

    def limit_for(self, scope: Scope) -> int:
        """The body limit of this request (see the module for the rules)."""
        limit = self.max_body_bytes
        method, path = scope["method"], scope["path"]
        for route in self._routes:
            if route.method == method and route.pattern.match(path):
                limit = route.limit
                break
        if self.identify is not None and self.identify(scope) is None:
            limit = min(limit, self.anonymous_max_body_bytes)
        return limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope["query_string"] or "\x00" in scope["path"]:
            await error_response(400, "bad_request", "NUL bytes are not allowed in URLs")(
                scope, receive, send
            )
            return
        declared = -1
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == b"content-length":
                declared = int(value) if value.isdigit() else -1
        if header_bytes > self.max_header_bytes:
            await error_response(
                431,
                "headers_too_large",
                f"the request headers are larger than {self.max_header_bytes} bytes",
                headers={"Connection": "close"},
            )(scope, receive, send)
            return
        if declared == 0 or (declared < 0 and scope["method"] in ("GET", "HEAD")):
            await self.app(scope, receive, send)  # nothing to count: the common case
            return
        limit = self.limit_for(scope)
        if declared > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # an app that does not map HTTPException itself
            if started:
                raise
            await self._refuse(scope, receive, send, exc.limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"the request body is larger than {limit} bytes",
            details={"max_bytes": limit},
            # The body was not read: the connection cannot carry another request after it.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _route_limit(spec: str, limit: int) -> _RouteLimit:
    method, _, template = spec.partition(" ")
    if not template.startswith("/"):
        raise ValueError(f"route limit {spec!r}: expected 'METHOD /path/{{param}}'")
    pattern, _, _ = compile_path(template)
    return _RouteLimit(method.upper(), pattern, limit)
