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

import contextlib
import functools
import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
from starlette.responses import Response
from starlette.types import Scope

from lockstep.cache import Cache, Dependency, StampSnapshot
from lockstep.exceptions import (
    CacheUnavailableError,
    ConfigurationError,
    PreconditionFailedError,
)
from lockstep.http.consistency import current_http_scope

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


@dataclass(frozen=True)
class _Stored:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @functools.cached_property
    def raw(self) -> list[tuple[bytes, bytes]]:
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers] + [
            (b"content-length", str(len(self.body)).encode())
        ]


class _Replay(Response):
    """A response whose raw headers are already built: a cache hit encodes nothing twice."""

    def __init__(self, body: bytes, status: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.body = body
        self.status_code = status
        self.background = None
        self.raw_headers = raw_headers


_disabled: ContextVar[bool] = ContextVar("lockstep_caching_disabled", default=False)


@contextlib.contextmanager
def caching_disabled() -> Iterator[None]:
    """Within this block (this task and what it awaits), cached routes neither look up nor
    store: they answer exactly as the route does with caching off, ETag included. For the
    differential harness and for debugging."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


@dataclass(frozen=True, slots=True)
class RouteCache:
    """How a ``@cached`` endpoint is cached (found on the endpoint as ``MARKER``)."""

    MARKER = "__lockstep_route_cache__"
    name: str


_X_CACHE = {"hit": b"HIT", "miss": b"MISS", "bypass": b"BYPASS"}


def _conditional_headers(raw: list[tuple[bytes, bytes]]) -> tuple[str | None, frozenset[str]]:
    """``If-None-Match`` and the request's Cache-Control directives, in one pass."""
    if_none_match = None
    directives: frozenset[str] = frozenset()
    for name, value in raw:
        if name == b"if-none-match":
            if_none_match = value.decode("latin-1")
        elif name == b"cache-control":
            text = value.decode("latin-1").lower()
            directives = frozenset(p.strip().split("=")[0] for p in text.split(",") if p.strip())
    return if_none_match, directives


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


@functools.cache
def _parameter_names(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The names ``fn`` accepts (None: it takes ``**kwargs``), computed once per function."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(params)


def _call_with(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    names = _parameter_names(fn)
    if names is None:
        return fn(**kwargs)
    return fn(**{name: kwargs[name] for name in names if name in kwargs})


@dataclass(frozen=True, slots=True)
class _Shortcut:
    """How to answer one public URL from the cache without routing: its key and stamps."""

    route_name: str
    cache_key: Hashable
    deps: tuple[Dependency, ...]
    fixed: list[tuple[bytes, bytes]]
    routing: dict[str, Any]
    """What routing left in the scope (``route``, ``fastapi``), restored on a shortcut answer
    so route-template metrics label it like a routed request."""


class HttpCache:
    """The :class:`Cache` HTTP routes use, found per request at ``app.state.lockstep.http``.

    It also remembers, per URL, the key and dependencies a 2xx answer was cached under, so
    the next request for that URL is answered (304 or replay) before routing, FastAPI's
    dependency solving and the endpoint — the same stamps decide, so it is exactly as fresh.
    Public routes always; private routes only when the app supplies ``identify(scope)``, a
    function that fully authenticates the raw request (signature, expiry) and returns the
    value the routes' ``vary`` returns for that caller, or None. Without it, private routes
    always go through the app, so authentication runs first.
    """

    def __init__(
        self,
        cache: Cache,
        max_shortcuts: int = 10_000,
        identify: Callable[[Scope], Hashable | None] | None = None,
    ) -> None:
        self.cache = cache
        self.identify = identify
        self._shortcuts: OrderedDict[tuple[int, str, bytes, Hashable], _Shortcut] = OrderedDict()
        self._max_shortcuts = max_shortcuts

    @staticmethod
    def _url(scope: Scope, who: Hashable) -> tuple[int, str, bytes, Hashable]:
        # Per app (a runtime may be installed on several), path, query string and caller.
        return (id(scope.get("app")), scope["path"], scope["query_string"], who)

    def remember(self, scope: Scope, shortcut: _Shortcut, who: Hashable) -> None:
        key = self._url(scope, who)
        self._shortcuts[key] = shortcut
        self._shortcuts.move_to_end(key)
        if len(self._shortcuts) > self._max_shortcuts:
            self._shortcuts.popitem(last=False)

    async def answer(self, scope: Scope) -> Response | None:
        """A response for a public URL whose cached answer is current, else None."""
        if scope["method"] != "GET" or not self._shortcuts or _disabled.get():
            return None
        entry = self._shortcuts.get(self._url(scope, _PUBLIC))
        if entry is None and self.identify is not None:
            who = self.identify(scope)
            if who is not None:
                entry = self._shortcuts.get(self._url(scope, who))
        if entry is None:
            return None
        if_none_match, directives = _conditional_headers(scope["headers"])
        if directives:
            return None  # the client asked for revalidation or no storing: full path
        stamped = await self.stamps(entry.deps)
        if stamped is None:
            return None
        etag = self.cache.etag_for(entry.route_name, entry.cache_key, stamped[1])
        etag_header = (b"etag", quote_etag(etag).encode())
        if if_none_match is not None and etag_matches(if_none_match, etag):
            response: Response = _Replay(b"", 304, [*entry.fixed, etag_header])
        else:
            found = self.cache.local_hit(entry.route_name, etag)
            if found is None:
                return None
            stored, age = found
            headers = [
                *stored.raw,
                *entry.fixed,
                (b"x-cache", b"HIT"),
                (b"age", str(int(age)).encode()),
                etag_header,
            ]
            response = _Replay(stored.body, stored.status, headers)
        scope.update(entry.routing)  # metrics still label the answer by its route template
        return response

    async def stamps(
        self, deps: Sequence[Dependency]
    ) -> tuple[tuple[str, ...], StampSnapshot] | None:
        """The dependencies' current stamps, or None when they cannot be read (backend down)."""
        try:
            return await self.cache.snapshot(deps)
        except Exception:
            self.cache.metrics.errors.labels("read_stamps").inc()
            if self.cache.fail_closed:
                raise CacheUnavailableError("the cache is unavailable") from None
            return None


_PUBLIC = ("lockstep", "public")


def _shortcut_identity(
    http: HttpCache, scope: Scope, public: bool, varies: Hashable
) -> Hashable | None:
    """Under which caller a cached answer may be served before routing, or None (never).

    Public routes: anyone. Private routes: only with an ``identify`` hook, and only when it
    names this request's caller exactly as the route's ``vary`` did (a hook that disagrees
    with the route disables the shortcut rather than serving one caller's data to another).
    """
    if public:
        return _PUBLIC
    if http.identify is None or varies is None:
        return None
    who = http.identify(scope)
    return who if who == varies else None


def _current() -> tuple[Scope, HttpCache]:
    scope = current_http_scope()
    runtime = getattr(scope["app"].state, "lockstep", None) if scope else None
    http = getattr(runtime, "http", None)
    if scope is None or not isinstance(http, HttpCache):
        raise ConfigurationError("cached routes need Lockstep.install(app) on their app")
    return scope, http


def _parts(
    kwargs: dict[str, Any],
    depends: Callable[..., Sequence[Dependency]],
    vary: Callable[..., Hashable] | None,
    key: Callable[..., Hashable] | None,
) -> tuple[Sequence[Dependency], Hashable, Hashable]:
    return (
        _call_with(depends, kwargs),
        None if vary is None else _call_with(vary, kwargs),
        None if key is None else _call_with(key, kwargs),
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
    fixed = [(b"cache-control", CACHE_CONTROL[cache_control].encode())]
    if not public:
        fixed.append((b"vary", b"Authorization, Cookie"))

    def decorate(endpoint: F) -> F:
        route_name = name or f"{endpoint.__module__}.{endpoint.__qualname__}"

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Response:
            scope, http = _current()
            deps, varies, own = _parts(kwargs, depends, vary, key)
            http.cache.check(deps)
            if_none_match, directives = _conditional_headers(scope["headers"])
            cache_key = (route_name, varies, own, scope["query_string"].decode("latin-1"))
            stamped = await http.stamps(deps)
            off = _disabled.get()
            if stamped is not None and "no-cache" not in directives and not off:
                etag = http.cache.etag_for(route_name, cache_key, stamped[1])
                if if_none_match is not None and etag_matches(if_none_match, etag):
                    return _Replay(b"", 304, [*fixed, (b"etag", quote_etag(etag).encode())])

            async def render() -> _Stored:
                response = await endpoint(*args, **kwargs)
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
                deps,
                render,
                codec=(_encode, _decode),
                revalidate="no-cache" in directives or off,
                store="no-store" not in directives and not off,
                storable=lambda stored: 200 <= stored.status < 300,
                stamped=stamped,
            )
            stored = found.value
            headers = [
                *stored.raw,
                *fixed,
                (b"x-cache", _X_CACHE[found.status]),
                (b"age", str(int(found.age)).encode()),
            ]
            if found.etag and 200 <= stored.status < 300:
                headers.append((b"etag", quote_etag(found.etag).encode()))
                who = _shortcut_identity(http, scope, public, varies)
                if who is not None and found.status != "bypass" and not off:
                    routing = {k: scope[k] for k in ("route", "fastapi") if k in scope}
                    if "fastapi" in routing:
                        routing["fastapi"] = dict(routing["fastapi"])
                    shortcut = _Shortcut(route_name, cache_key, tuple(deps), fixed, routing)
                    http.remember(scope, shortcut, who)
            return _Replay(stored.body, stored.status, headers)

        setattr(wrapper, RouteCache.MARKER, RouteCache(route_name))
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
        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            scope, http = _current()
            wanted = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"if-match"), None
            )
            if wanted is not None:
                deps, varies, own = _parts(kwargs, depends, vary, key)
                cache_key = (name, varies, own, "")
                stamped = await http.stamps(deps)
                if stamped is None:
                    # Cannot tell whether the resource changed: refuse rather than risk a
                    # lost update; the client retries (503 is retryable).
                    raise CacheUnavailableError("cannot check If-Match right now; retry")
                etag = http.cache.etag_for(name, cache_key, stamped[1])
                if not etag_matches(wanted, etag):
                    raise PreconditionFailedError(
                        "the resource changed since you read it (If-Match does not match); "
                        "read it again and reapply your change",
                        details={"etag": quote_etag(etag)},
                    )
            return await endpoint(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
