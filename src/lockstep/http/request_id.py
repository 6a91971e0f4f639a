"""Request ids: one id per HTTP request, accepted from upstream or generated, echoed back.

Guarantees, for every ``http`` request that passes through :class:`RequestIdMiddleware`:

* An incoming id is used only if it is 1-128 characters from ``[A-Za-z0-9._:@/+=-]``;
  anything else is replaced by a generated id. The rejected raw value is never logged (only
  its length), so a hostile header cannot inject text into log lines.
* The id is stored in ``scope["state"]["request_id"]``, returned by :func:`current_request_id`
  and bound as ``request_id`` in ``structlog.contextvars`` for the whole request, including
  background tasks (they run before the middleware returns). Both are restored afterwards.
* Every response carries the id header, including error responses produced by the
  middleware inside this one (place it outermost).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextvars import ContextVar

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("lockstep.http")

DEFAULT_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128
_VALID_ID = re.compile(rf"[A-Za-z0-9._:@/+=-]{{1,{MAX_REQUEST_ID_LENGTH}}}")

_current: ContextVar[str | None] = ContextVar("lockstep_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context, or ``None`` outside a request."""
    return _current.get()


def is_valid_request_id(value: str) -> bool:
    """Whether ``value`` is an acceptable upstream request id (bounded charset and length)."""
    return _VALID_ID.fullmatch(value) is not None


def uuid4_hex() -> str:
    """A random (version 4) UUID as 32 hex digits, same as ``uuid.uuid4().hex``.

    Built from the bytes directly: three times cheaper than constructing a ``UUID`` object,
    which matters at one call per request.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


class RequestIdMiddleware:
    """Assign each HTTP request an id and echo it in ``header`` on the response.

    ``generator`` makes new ids (default: :func:`uuid4_hex`); it must return a
    value that is safe in an HTTP header. Non-HTTP scopes pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        header: str = DEFAULT_HEADER,
        generator: Callable[[], str] | None = None,
    ) -> None:
        self.app = app
        self.header = header
        self._header_key = header.lower().encode("latin-1")
        self._generator = generator or uuid4_hex

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = self._incoming(scope) or self._generator()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        header_key = self._header_key
        header_value = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A new list and message: the app may reuse its header list across responses.
                headers = [h for h in message.get("headers", ()) if h[0].lower() != header_key]
                headers.append((header_key, header_value))
                message = {**message, "headers": headers}
            await send(message)

        token = _current.set(request_id)
        log_tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**log_tokens)
            _current.reset(token)

    def _incoming(self, scope: Scope) -> str | None:
        header_key = self._header_key
        for key, value in scope["headers"]:
            if key.lower() == header_key:
                raw: str = value.decode("latin-1")
                if _VALID_ID.fullmatch(raw) is not None:
                    return raw
                # Log only the length: the value is attacker-controlled.
                log.info("request_id_rejected", length=len(raw))
                return None
        return None
