"""Rate limits applied to requests before the app runs, with ``RateLimit-*`` headers.

:class:`RateLimitMiddleware` guarantees, for every HTTP request some :class:`RateLimit` applies
to:

* A limit applies to the requests its ``routes`` name (``"POST /auth/token"``,
  ``"* /api/{rest:path}"`` for every method under a prefix), or to every request.
* It is counted once, under every limit that applies, in one store call — after
  authentication: a ``"user"`` limit counts by what ``identify(scope)`` returns (it must
  verify the credentials, as the cache's does; an unauthenticated request counts by its
  address), never by a header anyone can set.
* Refused: the 429 ``rate_limited`` envelope with ``Retry-After`` (whole seconds, rounded
  up: waiting that long is enough) and the ``RateLimit-*`` headers; the app does not run.
* Allowed: the response carries ``RateLimit-RateLimit``, ``RateLimit-Remaining`` and
  ``RateLimit-Reset`` (seconds) of the tightest limit — once: a response whose app already
  set ``RateLimit-RateLimit`` (a handler's own, narrower check) keeps the app's.
* The client address is the peer's, or — when the peer is one of ``trusted_proxies`` —
  the last address in ``X-Forwarded-For`` that is not a trusted proxy. A client that sends
  its own ``X-Forwarded-For`` straight to the app changes nothing.
* The store failing allows the request (no headers); see the limiter.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Hashable, Sequence
from functools import lru_cache

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.http.errors import error_response
from lockstep.http.ratelimit.limiter import Check, RateLimiter
from lockstep.http.ratelimit.rules import Outcome, RateLimit

_LIMIT = b"ratelimit-limit"


class ClientAddress:
    """The client's address from the ASGI scope, trusting ``X-Forwarded-For`` only when the
    peer is one of ``trusted_proxies`` (addresses or networks, e.g. ``10.0.0.0/8``)."""

    def __init__(self, trusted_proxies: Sequence[str] = ()) -> None:
        networks = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self._trusted = networks

        @lru_cache(maxsize=4096)
        def trusted(address: str) -> bool:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return False
            return any(ip in network for network in networks)

        self._is_trusted = trusted

    def __call__(self, scope: Scope) -> str:
        client = scope.get("client")
        peer: str = client[0] if client else "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded = b",".join(v for k, v in scope["headers"] if k == b"x-forwarded-for")
        address = peer
        for hop in reversed(forwarded.decode("latin-1").split(",")):
            hop = hop.strip()
            if not hop:
                continue
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return address  # garbage a proxy passed on: the last hop we can trust
            address = hop
        return address


class RateLimitMiddleware:
    """Count requests under ``limits`` with ``limiter`` (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        limits: Sequence[RateLimit],
        identify: Callable[[Scope], Hashable | None] | None = None,
        client_address: ClientAddress | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self._memory = limiter.memory
        self.identify = identify
        self.client_address = client_address or ClientAddress()
        self._everywhere = [(limit, "") for limit in limits if not limit.routes]
        self._routed = [
            (limit, spec, method, compile_path(template)[0])
            for limit in limits
            for spec in limit.routes
            for method, _, template in [spec.partition(" ")]
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        checks = self._checks(scope)
        if not checks:
            await self.app(scope, receive, send)
            return
        memory = self._memory
        outcomes = memory.hit_now(checks) if memory is not None else await self.limiter.hit(checks)
        if outcomes is None:  # the store failed: allowed, no headers
            await self.app(scope, receive, send)
            return
        if len(outcomes) == 1:
            shown = outcomes[0]
            allowed = shown[0]
        else:  # the tightest limit is the one shown
            shown = min(outcomes, key=_remaining)
            allowed = all(outcome[0] for outcome in outcomes)
        if not allowed:
            if memory is not None:
                self.limiter.count_refusals(checks, outcomes)
            await self._refuse(scope, receive, send, checks, outcomes)
            return
        extra = _headers(shown)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                for name, _ in headers:
                    # The app's own check (rarely): its headers win.
                    if name[:1] in b"rR" and name.lower() == _LIMIT:
                        break
                else:
                    message = {**message, "headers": [*headers, *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        checks: Sequence[Check],
        outcomes: Sequence[Outcome],
    ) -> None:
        refused = [o for o in outcomes if not o.allowed]
        wait = max(o.retry_after for o in refused)
        headers = {k.decode(): v.decode() for k, v in _headers(min(refused, key=_remaining))}
        headers["Retry-After"] = str(max(math.ceil(wait), 1))
        names = [c.limit.name for c, o in zip(checks, outcomes, strict=True) if not o.allowed]
        response = error_response(
            429,
            "rate_limited",
            f"too many requests; try again in {headers['Retry-After']} s",
            details={"limits": names},
            headers=headers,
        )
        await response(scope, receive, send)

    def _checks(self, scope: Scope) -> list[Check]:
        applicable = self._everywhere
        if self._routed:
            applicable = applicable.copy()
            method, path = scope["method"], scope["path"]
            for limit, spec, route_method, pattern in self._routed:
                if route_method in (method, "*") and pattern.match(path):
                    applicable.append((limit, spec))
        if not applicable:
            return []
        address: str | None = None
        user: Hashable | None = None
        checks = []
        for limit, spec in applicable:
            key = limit.name
            for part in limit.by:
                if part == "route":
                    key += "|" + spec
                    continue
                if part == "user" and self.identify is not None:
                    user = user if user is not None else self.identify(scope)
                    if user is not None:
                        key += f"|u:{user}"
                        continue
                if address is None:
                    address = self.client_address(scope)
                key += "|a:" + address
            checks.append(Check(limit, key))
        return checks


def _remaining(outcome: Outcome) -> int:
    return outcome.remaining


def _headers(outcome: Outcome) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"ratelimit-limit", b"%d" % outcome.limit),
        (b"ratelimit-remaining", b"%d" % outcome.remaining),
        (b"ratelimit-reset", b"%d" % max(math.ceil(outcome.reset), 0)),
    )
