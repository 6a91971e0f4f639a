"""Request ids: one id per HTTP request, accepted from upstream or generated, echoed back.

Guarantees, for every ``http`` request that passes through :class:`RequestIdMiddleware`:

* An incoming id is used only if it is 1-128 characters from ``[A-Za-z0-9._:@/+=-]``;
  anything else is replaced by a generated id. The rejected raw value is never logged (only
  its length), so a hostile header cannot inject text into log lines.
* The id is stored in ``scope["state"]["request_id"]`` and returned by
  :func:`current_request_id` for the whole request, including background tasks (they run
  before the middleware returns); restored afterwards. Every log line written meanwhile
  carries it as ``request_id`` (the ``add_request_id`` processor that ``configure_logging``
  installs), whatever the app does with ``structlog.contextvars``.
* Every response carries the id header, including error responses produced by the
  middleware inside this one (place it outermost).
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Callable, Iterable, Iterator

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.observability.request_context import (
    bind_request_id,
    current_request_id,
    reset_request_id,
)

log = structlog.get_logger("lockstep.http")

DEFAULT_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128
_VALID_ID = re.compile(rf"[A-Za-z0-9._:@/+=-]{{1,{MAX_REQUEST_ID_LENGTH}}}")

__all__ = [
    "DEFAULT_HEADER",
    "MAX_REQUEST_ID_LENGTH",
    "RequestIdMiddleware",
    "Uuid4HexIds",
    "accept_request_id",
    "current_request_id",
    "incoming_request_id",
    "is_valid_request_id",
    "uuid4_hex",
]


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


# Byte maps setting the UUID4 version and variant bits, applied in C to a whole batch.
_VERSION_4 = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_VARIANT_RFC_4122 = bytes((byte & 0x3F) | 0x80 for byte in range(256))


def _uuid4_hex_batch(count: int) -> list[str]:
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_RFC_4122)
    text = raw.hex()
    return [text[start : start + 32] for start in range(0, len(text), 32)]


class Uuid4HexIds:
    """The default id generator: values like :func:`uuid4_hex`, read ahead ``batch`` at a time.

    One ``os.urandom`` system call per ``batch`` ids instead of one per request (the call
    costs more than everything else about the id). Each id is handed out once, also when
    threads share the generator; a child process forked from one that has read ahead
    discards the parent's ids, so processes never share any.
    """

    def __init__(self, batch: int = 128) -> None:
        self._batch = batch
        self._ids: Iterator[str] = iter(())
        if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork either
            os.register_at_fork(after_in_child=_discard_after_fork(weakref.ref(self)))

    def __call__(self) -> str:
        # next() on a list iterator is atomic: threads racing to refill each get their own
        # fresh batch, and an id is never returned twice.
        while True:
            try:
                return next(self._ids)
            except StopIteration:
                self._ids = iter(_uuid4_hex_batch(self._batch))

    def discard(self) -> None:
        """Forget the ids read ahead (done automatically in a forked child)."""
        self._ids = iter(())


def _discard_after_fork(ref: weakref.ref[Uuid4HexIds]) -> Callable[[], None]:
    def discard() -> None:
        generator = ref()
        if generator is not None:
            generator.discard()

    return discard


def incoming_request_id(headers: Iterable[tuple[bytes, bytes]], header_key: bytes) -> str | None:
    """The id the client or proxy sent in header ``header_key`` (lowercase), if acceptable.

    ``None`` when the header is absent or its (first) value is rejected by
    :func:`accept_request_id`. Header names in an ASGI scope are lowercase (servers
    lowercase them; Starlette's ``Request.headers`` relies on it too), so they are compared
    as they are.
    """
    for key, value in headers:
        if key == header_key:
            return accept_request_id(value)
    return None


def accept_request_id(value: bytes) -> str | None:
    """``value`` (a raw header value) as a request id, or ``None`` if it is not a valid one.

    A rejected value is logged as ``request_id_rejected`` with its length only: it is
    attacker-controlled.
    """
    raw = value.decode("latin-1")
    if _VALID_ID.fullmatch(raw) is not None:
        return raw
    log.info("request_id_rejected", length=len(raw))
    return None


class RequestIdMiddleware:
    """Assign each HTTP request an id and echo it in ``header`` on the response.

    ``generator`` makes new ids (default: a :class:`Uuid4HexIds`, random UUID4s as 32 hex
    digits); it must return a value that is safe in an HTTP header. Non-HTTP scopes pass
    through untouched.
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
        self._generator = generator or Uuid4HexIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = incoming_request_id(scope["headers"], self._header_key) or self._generator()
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

        token = bind_request_id(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_request_id(token)
