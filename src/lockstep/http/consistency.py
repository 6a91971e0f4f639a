"""Read-your-writes over HTTP: every write response names its change, reads can ask for it.

A response to a request that committed changes carries ``Lockstep-Token: <change id>``.
A request that sends ``Lockstep-Token`` back is answered from data that includes that change,
in any process of the deployment (the cache bypasses a local mirror that has not seen it).
A malformed token is ignored (the request is served normally): it can only ask for more
freshness, never for less.

The same response carries ``Lockstep-Txid: <txid>[, <txid>...]``, the database transaction
id of each commit (PostgreSQL ``pg_current_xact_id()``, SQLite the change-log id): the ids
Electric shape messages carry in ``txids``, so a client can await its own write there.
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.changes import consistency_scope

_scope: ContextVar[Scope | None] = ContextVar("lockstep_http_scope", default=None)

TOKEN_HEADER = "Lockstep-Token"  # noqa: S105 - a header name, not a secret
TXID_HEADER = b"lockstep-txid"


def current_http_scope() -> Scope | None:
    """The ASGI scope of the request being served (set by :class:`ConsistencyMiddleware`)."""
    return _scope.get()


class ConsistencyMiddleware:
    """Opens a read-your-writes scope per request and returns the write token; also makes
    the request's ASGI scope available to ``@cached`` routes without a Request parameter."""

    def __init__(self, app: ASGIApp, header: str = TOKEN_HEADER) -> None:
        self.app = app
        self.header = header
        self._raw = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = 0
        for name, value in scope["headers"]:
            if name == self._raw:
                text = value.decode("latin-1").strip()
                if text.isdigit() and len(text) < 20:
                    wanted = int(text)
                break
        reset = _scope.set(scope)
        try:
            if not wanted:
                # A public URL whose cached answer is current is answered here, before
                # routing (see HttpCache.answer); a read-your-writes request takes the
                # full path so its token is honoured.
                app_state = getattr(scope.get("app"), "state", None)
                http = getattr(getattr(app_state, "lockstep", None), "http", None)
                response = await http.answer(scope) if http is not None else None
                if response is not None:
                    await response(scope, receive, send)
                    return
            await self._serve(scope, receive, send, wanted)
        finally:
            _scope.reset(reset)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, wanted: int) -> None:
        with consistency_scope(min_change=wanted) as holder:

            async def send_with_token(message: Message) -> None:
                if message["type"] == "http.response.start" and holder.token is not None:
                    headers = list(message.get("headers", []))
                    headers.append((self._raw, str(holder.token).encode("latin-1")))
                    if holder.txids:
                        txids = ", ".join(str(t) for t in holder.txids)
                        headers.append((TXID_HEADER, txids.encode("latin-1")))
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_token)
