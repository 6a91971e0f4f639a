"""Conservative security headers on every HTTP response.

Guarantees: each response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options:
DENY``, ``Referrer-Policy: strict-origin-when-cross-origin``, ``Cross-Origin-Opener-Policy:
same-origin``, a ``Content-Security-Policy`` and, when ``hsts_seconds > 0``,
``Strict-Transport-Security`` — except where the app already set that header, which is kept
untouched (a route that embeds content or needs a looser CSP says so itself).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'self'"


def security_headers(
    hsts_seconds: int = 0, content_security_policy: str | None = DEFAULT_CSP
) -> list[tuple[str, str]]:
    """The headers the middleware adds, in order. ``content_security_policy=None`` omits CSP."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if content_security_policy:
        headers.append(("Content-Security-Policy", content_security_policy))
    if hsts_seconds > 0:
        # Only meaningful over HTTPS; browsers ignore it on plain HTTP.
        headers.append(("Strict-Transport-Security", f"max-age={hsts_seconds}"))
    return headers


def encoded_security_headers(
    hsts_seconds: int = 0, content_security_policy: str | None = DEFAULT_CSP
) -> tuple[tuple[bytes, bytes], ...]:
    """:func:`security_headers` as ASGI header pairs (lowercase name, value), in order."""
    return tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in security_headers(hsts_seconds, content_security_policy)
    )


class SecurityHeadersMiddleware:
    """Add :func:`security_headers` to every HTTP response, never overriding the app's own."""

    def __init__(
        self,
        app: ASGIApp,
        hsts_seconds: int = 0,
        content_security_policy: str | None = DEFAULT_CSP,
    ) -> None:
        self.app = app
        # Encoded once: the per-request work is one set build and one list copy.
        self._headers = encoded_security_headers(hsts_seconds, content_security_policy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        ours = self._headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in ours if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
