"""Cached endpoints with ETag/304, If-Match/412 and per-route Cache-Control.

``@cached(...)`` wraps a FastAPI endpoint (after its dependencies, so after
authentication) and:

* computes the ETag from the version stamps of the route's declared dependencies and answers
  ``If-None-Match`` with 304 before the endpoint or the database runs;
* serves the response body, status and allow-listed headers from the exact cache, storing
  2xx responses only; ``X-Cache: HIT|MISS|BYPASS`` and ``Age`` say what happened;
* keys every entry by the caller (``vary``) unless the route is declared ``public``: a route
  with neither fails when it is declared, not in production;
* honours request ``Cache-Control: no-cache`` (recompute, then store) and ``no-store``.

ETags are digests of stamps shared by every process (never Python's ``hash()``), quoted, and
strong. ``precondition(...)`` checks ``If-Match`` on writes against the same ETag and answers
412 on a mismatch. Limit: the check runs before the write's transaction, so on PostgreSQL two
writers racing within milliseconds can both pass; guard such updates with a version column.

Both decorators find the cache of the app serving the request (``Lockstep.install(app)``),
so routers can be declared at import time.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lockstep.cache import Cache, Dependency
from lockstep.exceptions import (
    CacheUnavailableError,
    ConfigurationError,
    PreconditionFailedError,
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

CACHE_CONTROL = {
    "static": "public, max-age=31536000, immutable",
    "api_short": "private, max-age=300",
    "api_long": "private, max-age=3600",
    "health": "public, max-age=30",
    "no_cache": "no-store",
    # Private API data: browsers may keep it but must revalidate every time (a 304 is
    # cheap), so an invalidation is visible immediately.
    "private": "private, no-cache",
}
Preset = Literal["static", "api_short", "api_long", "health", "no_cache", "private"]

REPLAYED_HEADERS = frozenset({"content-type", "content-language", "location", "link"})


@dataclass(frozen=True, slots=True)
class _Stored:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _encode(stored: _Stored) -> bytes:
    head = orjson.dumps([stored.status, stored.headers])
    return len(head).to_bytes(4, "big") + head + stored.body


def _decode(raw: bytes) -> _Stored:
    size = int.from_bytes(raw[:4], "big")
    status, headers = orjson.loads(raw[4 : 4 + size])
    return _Stored(status, tuple((k, v) for k, v in headers), raw[4 + size :])


def quote_etag(etag: str) -> str:
    return f'"{etag}"'


def etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match / If-Match comparison against one strong ETag."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = quote_etag(etag)
    candidates = (part.strip().removeprefix("W/") for part in header.split(","))
    return any(candidate == wanted for candidate in candidates)


def _call_with(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(**kwargs)
    return fn(**{name: kwargs[name] for name in params if name in kwargs})


def _with_request_param(endpoint: Callable[..., Any]) -> tuple[inspect.Signature, str, bool]:
    signature = inspect.signature(endpoint)
    for name, param in signature.parameters.items():
        if param.annotation in (Request, "Request"):
            return signature, name, False
    extra = inspect.Parameter(
        "_lockstep_request", inspect.Parameter.KEYWORD_ONLY, annotation=Request
    )
    params = [*signature.parameters.values()]
    return signature.replace(parameters=[*params, extra]), "_lockstep_request", True


def _request_directives(request: Request) -> set[str]:
    header = request.headers.get("cache-control", "")
    return {part.strip().lower().split("=")[0] for part in header.split(",") if part.strip()}


class HttpCache:
    """The :class:`Cache` HTTP routes use, found per request at ``app.state.lockstep.http``."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    @staticmethod
    def key(name: str, vary: Hashable, own: Hashable, query: Sequence[tuple[str, str]]) -> Hashable:
        return (name, vary, own, tuple(sorted(query)))

    async def etag(self, name: str, key: Hashable, deps: Sequence[Dependency]) -> str | None:
        """The current ETag, or None when the stamps cannot be read (backend down)."""
        try:
            _, snapshot = await self.cache.snapshot(deps)
        except Exception:
            self.cache.metrics.errors.labels("read_stamps").inc()
            if self.cache.fail_closed:
                raise CacheUnavailableError("the cache is unavailable") from None
            return None
        return self.cache.etag_for(name, key, snapshot)


def _http_cache(request: Request) -> HttpCache:
    runtime = getattr(request.app.state, "lockstep", None)
    http = getattr(runtime, "http", None)
    if not isinstance(http, HttpCache):
        raise ConfigurationError("cached routes need Lockstep.install(app) on their app")
    return http


@dataclass(frozen=True, slots=True)
class _RouteCall:
    """One call of a wrapped endpoint: its request, arguments, dependencies and key parts."""

    request: Request
    kwargs: dict[str, Any]
    deps: Sequence[Dependency]
    vary: Hashable
    own: Hashable


def _route_call(
    kwargs: dict[str, Any],
    request_param: str,
    injected: bool,
    depends: Callable[..., Sequence[Dependency]],
    vary: Callable[..., Hashable] | None,
    key: Callable[..., Hashable] | None,
) -> _RouteCall:
    request: Request = kwargs[request_param]
    call_kwargs = {k: v for k, v in kwargs.items() if not (injected and k == request_param)}
    return _RouteCall(
        request=request,
        kwargs=call_kwargs,
        deps=_call_with(depends, call_kwargs),
        vary=_call_with(vary, call_kwargs) if vary is not None else None,
        own=_call_with(key, call_kwargs) if key is not None else None,
    )


def cached(
    *,
    depends: Callable[..., Sequence[Dependency]],
    vary: Callable[..., Hashable] | None = None,
    public: bool = False,
    key: Callable[..., Hashable] | None = None,
    name: str | None = None,
    cache_control: Preset = "private",
) -> Callable[[F], F]:
    """Cache a GET endpoint that returns a Response. ``depends``, ``vary`` and ``key`` are
    called with the endpoint arguments they name (path/query parameters, dependencies)."""
    if vary is None and not public:
        raise ConfigurationError(
            "a cached route must say whose data it returns: pass vary=lambda principal: ... "
            "(the caller and tenant become part of the key) or public=True"
        )
    directive = CACHE_CONTROL[cache_control]

    def decorate(endpoint: F) -> F:
        route_name = name or f"{endpoint.__module__}.{endpoint.__qualname__}"
        signature, request_param, injected = _with_request_param(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(**kwargs: Any) -> Response:
            call = _route_call(kwargs, request_param, injected, depends, vary, key)
            http = _http_cache(call.request)
            http.cache.check(call.deps)
            query = list(call.request.query_params.multi_items())
            cache_key = HttpCache.key(route_name, call.vary, call.own, query)
            directives = _request_directives(call.request)
            headers = {"Cache-Control": directive}
            if not public:
                headers["Vary"] = "Authorization, Cookie"
            if "no-cache" not in directives:
                etag = await http.etag(route_name, cache_key, call.deps)
                if etag is not None and etag_matches(
                    call.request.headers.get("if-none-match"), etag
                ):
                    return Response(status_code=304, headers={**headers, "ETag": quote_etag(etag)})

            async def render() -> _Stored:
                response = await endpoint(**call.kwargs)
                if not isinstance(response, Response):
                    raise ConfigurationError(f"{route_name} must return a Response to be cached")
                kept = tuple(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in response.raw_headers
                    if k.decode("latin-1").lower() in REPLAYED_HEADERS
                )
                return _Stored(response.status_code, kept, bytes(response.body))

            found = await http.cache.get_or_compute(
                route_name,
                cache_key,
                call.deps,
                render,
                codec=(_encode, _decode),
                revalidate="no-cache" in directives,
                store="no-store" not in directives,
                storable=lambda stored: 200 <= stored.status < 300,
            )
            stored = found.value
            out = Response(stored.body, status_code=stored.status, headers=dict(stored.headers))
            for header, value in headers.items():
                out.headers[header] = value
            out.headers["X-Cache"] = found.status.upper()
            out.headers["Age"] = str(int(found.age))
            if found.etag and 200 <= stored.status < 300:
                out.headers["ETag"] = quote_etag(found.etag)
            return out

        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def precondition(
    *,
    name: str,
    depends: Callable[..., Sequence[Dependency]],
    vary: Callable[..., Hashable] | None = None,
    key: Callable[..., Hashable] | None = None,
) -> Callable[[F], F]:
    """Answer 412 when ``If-Match`` does not match the current ETag of the cached GET route
    ``name`` (same ``vary`` and ``key``; the representation without query parameters)."""

    def decorate(endpoint: F) -> F:
        signature, request_param, injected = _with_request_param(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(**kwargs: Any) -> Any:
            call = _route_call(kwargs, request_param, injected, depends, vary, key)
            wanted = call.request.headers.get("if-match")
            if wanted is not None:
                http = _http_cache(call.request)
                cache_key = HttpCache.key(name, call.vary, call.own, ())
                etag = await http.etag(name, cache_key, call.deps)
                if etag is None:
                    # Cannot tell whether the resource changed: refuse rather than risk a
                    # lost update; the client retries (503 is retryable).
                    raise CacheUnavailableError("cannot check If-Match right now; retry")
                if not etag_matches(wanted, etag):
                    raise PreconditionFailedError(
                        "the resource changed since you read it (If-Match does not match); "
                        "read it again and reapply your change",
                        details={"etag": quote_etag(etag)},
                    )
            return await endpoint(**call.kwargs)

        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
