"""Cached endpoints with ETag/304, If-Match/412 and per-route Cache-Control.

``@cached(...)`` wraps a FastAPI GET endpoint (after its dependencies, so after
authentication) and serves its response from the exact cache. What it guarantees:

* **The key is everything that selects the representation**: the route, the request path
  with its parameters, the query normalized (parameter order does not matter, the order of a
  repeated parameter's values does), and the caller (``vary``). ``key=`` only adds to it.
  What the decorator cannot see is refused when the route is declared: header, cookie or
  body parameters anywhere in the endpoint's dependencies that are not under a parameter
  ``vary``/``key`` names, an endpoint reading the raw ``Request``, and ``depends``/``vary``/
  ``key`` functions naming parameters the endpoint does not have.
* **Conditionals only for a representation the caller may see**: ``If-None-Match`` is
  answered with 304 only against a 2xx answer stored (or just computed) under the caller's
  own key — never from stamps alone, so ``If-None-Match: *`` or a guessed ETag on an id the
  caller may not see gets the route's own 404. A 304 from a stored entry runs neither the
  endpoint nor the database.
* Only 2xx responses are stored; status and allow-listed headers are replayed;
  ``X-Cache: HIT|MISS|BYPASS`` and ``Age`` say what happened. Request ``no-cache``
  recomputes then stores, ``no-store`` computes without storing.

ETags are digests of the key and of stamps shared by every process (never Python's
``hash()``), quoted and strong. ``@precondition(get_route)`` on a write checks ``If-Match``
against the ETag ``get_route`` gives the same URL; see :mod:`lockstep.http.preconditions`.

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
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from starlette.responses import Response
from starlette.types import Scope

from lockstep.cache import Cache, Dependency, StampSnapshot
from lockstep.exceptions import CacheUnavailableError, ConfigurationError
from lockstep.http.consistency import current_http_scope

# Names a raw request's caller (or None); may be a coroutine function (see HttpCache).
Identify = Callable[[Scope], Hashable | Awaitable[Hashable | None] | None]

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

_disabled: ContextVar[bool] = ContextVar("lockstep_caching_disabled", default=False)


@contextlib.contextmanager
def caching_disabled() -> Iterator[None]:
    """Within this block (this task and what it awaits), cached routes neither look up nor
    store: they answer as the route does with caching off, ETag included. For the
    differential harness and for debugging."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


# -- stored responses ----------------------------------------------------------------------------


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


def _request_headers(raw: list[tuple[bytes, bytes]]) -> tuple[str | None, frozenset[str]]:
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


_X_CACHE = {"hit": b"HIT", "miss": b"MISS", "bypass": b"BYPASS"}


def _respond(
    stored: _Stored,
    etag: str,
    if_none_match: str | None,
    fixed: list[tuple[bytes, bytes]],
    status: str,
    age: float,
) -> Response:
    """The answer to a request for ``stored`` (the caller's own representation): 304 when it
    is a 2xx whose ETag the client holds, else the stored response itself. The one place
    both the pre-routing shortcut and the wrapped endpoint answer from."""
    headers = [
        *stored.raw,
        *fixed,
        (b"x-cache", _X_CACHE[status]),
        (b"age", str(int(age)).encode()),
    ]
    if etag and 200 <= stored.status < 300:
        etag_header = (b"etag", quote_etag(etag).encode())
        if etag_matches(if_none_match, etag):
            return _Replay(b"", 304, [*fixed, etag_header])
        headers.append(etag_header)
    return _Replay(stored.body, stored.status, headers)


# -- the key ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteKey:
    """Everything that selects one cached representation: the route, the path with its
    parameters, the normalized query, the caller (``vary``) and the route's own ``key``."""

    route: str
    path: str
    query: str
    vary: Hashable
    extra: Hashable


def normalized_query(raw: bytes) -> str:
    """The query string with parameters in name order (a repeated parameter keeps the order
    of its values, which can matter) and one spelling of each value."""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    pairs.sort(key=lambda pair: pair[0])  # stable: values of one name keep their order
    return urlencode(pairs)


# -- declaration ---------------------------------------------------------------------------------


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
class RouteCache:
    """How one ``@cached`` endpoint is cached; found on the endpoint as ``MARKER``.

    ``@precondition`` takes it from the GET endpoint, so a write checks ``If-Match`` against
    exactly the key and dependencies the GET's ETag is made of."""

    MARKER = "__lockstep_route_cache__"

    name: str
    depends: Callable[..., Sequence[Dependency]]
    vary: Callable[..., Hashable] | None
    key: Callable[..., Hashable] | None
    public: bool
    fixed: tuple[tuple[bytes, bytes], ...]

    @property
    def needs(self) -> frozenset[str]:
        """The endpoint parameters ``depends``, ``vary`` and ``key`` read."""
        names: set[str] = set()
        for fn in (self.depends, self.vary, self.key):
            if fn is not None:
                names.update(_parameter_names(fn) or ())
        return frozenset(names)

    def resolve(
        self, scope: Scope, kwargs: dict[str, Any], *, with_query: bool = True
    ) -> tuple[RouteKey, Sequence[Dependency]]:
        """The key and dependencies of the representation ``scope`` asks for (without its
        query: the representation ``If-Match`` on a write is compared with)."""
        deps = _call_with(self.depends, kwargs)
        varies = None if self.vary is None else _call_with(self.vary, kwargs)
        extra = None if self.key is None else _call_with(self.key, kwargs)
        query = normalized_query(scope["query_string"]) if with_query else ""
        return RouteKey(self.name, scope["path"], query, varies, extra), deps


def _check_declaration(spec: RouteCache, endpoint: Callable[..., Any]) -> None:
    """Refuse, when the route is declared, what the key could not contain."""
    accepted = _parameter_names(endpoint)
    if accepted is not None:
        unknown = sorted(spec.needs - set(accepted))
        if unknown:
            raise ConfigurationError(
                f"cached route {spec.name!r}: depends/vary/key read {unknown}, which "
                f"{endpoint.__qualname__} does not take"
            )
    named = set((_parameter_names(spec.vary) or ()) if spec.vary else ()) | set(
        (_parameter_names(spec.key) or ()) if spec.key else ()
    )
    dependant = get_dependant(path="", call=endpoint)
    if dependant.request_param_name or dependant.websocket_param_name:
        raise ConfigurationError(
            f"cached route {spec.name!r}: {endpoint.__qualname__} reads the raw request, "
            "which the cache key cannot see; take what selects the response as parameters"
        )
    unseen = _unseen_inputs(dependant, named, top=True)
    if unseen:
        raise ConfigurationError(
            f"cached route {spec.name!r}: the response may depend on {', '.join(unseen)}, "
            "which the cache key does not hold; name the parameter in vary= (whose data) "
            "or key= (what else selects it)"
        )


def _unseen_inputs(dependant: Dependant, named: set[str], *, top: bool = False) -> list[str]:
    """Header, cookie and body inputs of ``dependant``'s tree outside the key: a dependency
    whose value ``vary``/``key`` read is part of the key, with everything beneath it."""
    found = [
        f"{kind} {param.alias}"
        for kind, params in (
            ("header", dependant.header_params),
            ("cookie", dependant.cookie_params),
            ("body", dependant.body_params),
        )
        for param in params
        if not (top and param.name in named)
    ]
    for sub in dependant.dependencies:
        if top and sub.name in named:
            continue
        found.extend(_unseen_inputs(sub, named))
    return found


# -- the cache of one app -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Shortcut:
    """How to answer one URL from the cache without routing: its key and dependencies."""

    key: RouteKey
    deps: tuple[Dependency, ...]
    fixed: list[tuple[bytes, bytes]]
    routing: dict[str, Any]
    """What routing left in the scope (``route``, ``fastapi``), restored on a shortcut answer
    so route-template metrics label it like a routed request."""


class HttpCache:
    """The :class:`Cache` HTTP routes use, found per request at ``app.state.lockstep.http``.

    It also remembers, per URL and caller, the key and dependencies a 2xx answer was cached
    under, so the caller's next request for that URL is answered (304 or replay, by the same
    function the route uses) before routing, FastAPI's dependency solving and the endpoint —
    the same stamps decide, so it is exactly as fresh. Public routes for anyone; private
    routes only when the app supplies ``identify(scope)``, a function that fully
    authenticates the raw request (signature, expiry) and names the caller — an identity two
    requests share only if they have the same rights (casebook: the user and the role) — or
    returns None. A private answer is replayed only to the caller it was produced for, who
    passed the route's checks for that URL, so skipping them skips nothing that caller would
    fail; other callers go through the route (and still share the cached value and ETag when
    the route's ``vary`` says so). Without ``identify``, private routes always go through
    the app. ``identify`` may be a coroutine function: an app that must check that a
    token's user still stands (not deactivated, same role) reads that through the cache.
    """

    def __init__(
        self,
        cache: Cache,
        max_shortcuts: int = 10_000,
        identify: Identify | None = None,
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
        """A response for a URL whose cached answer is current and held in this process,
        else None (the request takes the full path)."""
        if scope["method"] != "GET" or not self._shortcuts or _disabled.get():
            return None
        entry = self._shortcuts.get(self._url(scope, _PUBLIC))
        if entry is None and self.identify is not None:
            who = await self.who(scope)
            if who is not None:
                entry = self._shortcuts.get(self._url(scope, who))
        if entry is None:
            return None
        if_none_match, directives = _request_headers(scope["headers"])
        if directives:
            return None  # the client asked for revalidation or no storing: full path
        stamped = await self.stamps(entry.deps)
        if stamped is None:
            return None
        etag = self.cache.etag_for(entry.key.route, entry.key, stamped[1])
        found = self.cache.local_hit(entry.key.route, etag)
        if found is None:
            return None
        stored, age = found
        scope.update(entry.routing)  # metrics still label the answer by its route template
        return _respond(stored, etag, if_none_match, entry.fixed, "hit", age)

    async def who(self, scope: Scope) -> Hashable | None:
        """What ``identify`` names the request's caller (None: anonymous, or no hook)."""
        if self.identify is None:
            return None
        who = self.identify(scope)
        if inspect.isawaitable(who):
            who = await who
        return who

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


async def _shortcut_identity(http: HttpCache, scope: Scope, public: bool) -> Hashable | None:
    """Under which caller a cached answer may be served before routing, or None (never).

    Public routes: anyone. Private routes: only with an ``identify`` hook, and only to the
    caller it names for the request that produced the answer — who passed the route's
    checks for this URL — never to another caller, whatever the route's ``vary`` shares.
    """
    if public:
        return _PUBLIC
    return await http.who(scope)


def current_http_cache() -> tuple[Scope, HttpCache]:
    """The request being served and its app's :class:`HttpCache`; ConfigurationError when
    the app has no ``Lockstep.install(app)``."""
    scope = current_http_scope()
    runtime = getattr(scope["app"].state, "lockstep", None) if scope else None
    http = getattr(runtime, "http", None)
    if scope is None or not isinstance(http, HttpCache):
        raise ConfigurationError("cached routes need Lockstep.install(app) on their app")
    return scope, http


# -- the decorator ------------------------------------------------------------------------------


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
    called with the endpoint arguments they name (path/query parameters, dependencies);
    ``vary`` says whose data it is (or ``public=True``), ``key`` adds to the key what else
    selects the response. Raises ConfigurationError when declared if the key could miss
    something (see the module docstring)."""
    if vary is None and not public:
        raise ConfigurationError(
            "a cached route must say whose data it returns: pass vary=lambda principal: ... "
            "(the caller and tenant become part of the key) or public=True"
        )
    fixed = [(b"cache-control", CACHE_CONTROL[cache_control].encode())]
    if not public:
        fixed.append((b"vary", b"Authorization, Cookie"))

    def decorate(endpoint: F) -> F:
        spec = RouteCache(
            name or f"{endpoint.__module__}.{endpoint.__qualname__}",
            depends,
            vary,
            key,
            public,
            tuple(fixed),
        )
        _check_declaration(spec, endpoint)

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Response:
            scope, http = current_http_cache()
            if scope["method"] not in ("GET", "HEAD"):
                raise ConfigurationError(f"cached route {spec.name!r} must be a GET route")
            cache_key, deps = spec.resolve(scope, kwargs)
            http.cache.check(deps)
            if_none_match, directives = _request_headers(scope["headers"])
            off = _disabled.get()

            async def render() -> _Stored:
                response = await endpoint(*args, **kwargs)
                if not isinstance(response, Response):
                    raise ConfigurationError(f"{spec.name} must return a Response to be cached")
                kept = tuple(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in response.raw_headers
                    if k.decode("latin-1").lower() in REPLAYED_HEADERS
                )
                return _Stored(response.status_code, kept, bytes(response.body))

            found = await http.cache.get_or_compute(
                spec.name,
                cache_key,
                deps,
                render,
                codec=(_encode, _decode),
                revalidate="no-cache" in directives or off,
                store="no-store" not in directives and not off,
                storable=lambda stored: 200 <= stored.status < 300,
                stamped=await http.stamps(deps),
            )
            stored = found.value
            if found.etag and 200 <= stored.status < 300 and found.status != "bypass" and not off:
                who = await _shortcut_identity(http, scope, spec.public)
                if who is not None:
                    routing = {k: scope[k] for k in ("route", "fastapi") if k in scope}
                    if "fastapi" in routing:
                        routing["fastapi"] = dict(routing["fastapi"])
                    shortcut = _Shortcut(cache_key, tuple(deps), fixed, routing)
                    http.remember(scope, shortcut, who)
            return _respond(stored, found.etag, if_none_match, fixed, found.status, found.age)

        setattr(wrapper, RouteCache.MARKER, spec)
        return wrapper  # type: ignore[return-value]

    return decorate
