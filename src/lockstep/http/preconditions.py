"""``If-Match`` on writes: a compare-and-set inside the write transaction.

    @router.get("/cases/{case_id}")
    @cached(name="case", depends=case_dependencies, vary=org)
    async def get_case(...): ...

    @router.patch("/cases/{case_id}")
    @precondition(get_case)
    async def update_case(...):
        async with db.writer() as session:
            case = await load_case(session, principal, case_id)   # 404 first
            ...

What it guarantees:

* **Exactly one of N concurrent writers holding the same validator wins; the others get
  412.** The comparison runs in the write transaction's ``VERIFY`` commit phase: after the
  endpoint's writes ran (so the rows it wrote are locked — on PostgreSQL by their UPDATE or
  DELETE, on SQLite by the single writer) and before COMMIT. Every writer moves the stamps
  of what it changed *before* it commits (``ANNOUNCE``) and again after, so a writer that got
  the row lock after another's commit always sees that other's stamps moved.
* **Only for a resource the caller may see.** The comparison runs only when the endpoint's
  own code reached its commit: a caller of another tenant, or of an id that does not exist,
  gets the endpoint's 404 whatever ``If-Match`` holds, and a 412's ``details.etag`` (the
  current ETag) is only ever shown to a caller who may read the resource.
* The ETag compared is the one ``get_case`` gives the same URL (its key without a query, its
  dependencies) for this caller: one key function serves both. An action on a resource
  (``POST /items/{id}/claim``) names itself: ``@precondition(get_item, action="claim")``
  compares with the ETag of the URL without ``/claim``.
* A write that commits nothing (a no-op) is compared when the endpoint returns.
* **If-Match is never ignored**: a write transaction that writes anything in a request that
  carries ``If-Match`` to a route without ``@precondition`` is refused with 412 before it
  commits — a resource without a validator cannot match (RFC 9110 §13.1.1).

The stamps are read from the authoritative store (Redis in scale-out mode, never a local
mirror that may lag); in embedded mode the process first applies what other processes
committed (the change log), so a CLI import next to the server is seen too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from lockstep.cache import Dependency
from lockstep.db import interception_of
from lockstep.exceptions import (
    CacheUnavailableError,
    ConfigurationError,
    PreconditionFailedError,
)
from lockstep.http.caching import (
    HttpCache,
    RouteCache,
    RouteKey,
    current_http_cache,
    etag_matches,
    quote_etag,
)
from lockstep.http.consistency import current_http_scope

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(slots=True)
class _Expectation:
    """What a request's ``If-Match`` must match, until a write transaction compares it."""

    http: HttpCache
    spec: RouteCache
    key: RouteKey
    deps: Sequence[Dependency]
    wanted: str
    checked: bool = False


_expected: ContextVar[_Expectation | None] = ContextVar("lockstep_if_match", default=None)


def route_cache_of(get_route: Callable[..., Any]) -> RouteCache:
    """The :class:`RouteCache` of a ``@cached`` endpoint; ConfigurationError otherwise."""
    spec = getattr(get_route, RouteCache.MARKER, None)
    if not isinstance(spec, RouteCache):
        raise ConfigurationError(
            f"precondition() takes the @cached GET endpoint whose ETag If-Match is compared "
            f"with; {getattr(get_route, '__qualname__', get_route)!r} is not one"
        )
    return spec


def precondition(get_route: Callable[..., Any], *, action: str | None = None) -> Callable[[F], F]:
    """Compare the request's ``If-Match`` with the ETag ``get_route`` (a ``@cached``
    endpoint) gives the request's URL, inside the endpoint's write transaction; 412 on a
    mismatch. The endpoint must take the parameters ``get_route``'s ``depends``/``vary``/
    ``key`` read (checked when declared). ``action``: the endpoint's URL is the resource's
    followed by ``/{action}`` (``POST /items/7/claim``), compared with ``/items/7``'s ETag."""
    spec = route_cache_of(get_route)
    suffix = None if action is None else "/" + action.strip("/")

    def decorate(endpoint: F) -> F:
        accepted = set(inspect.signature(endpoint).parameters)
        missing = sorted(spec.needs - accepted)
        if missing:
            raise ConfigurationError(
                f"precondition({spec.name!r}) on {endpoint.__qualname__}: the endpoint must "
                f"take {missing} (the GET route's key and dependencies read them)"
            )

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            scope, http = current_http_cache()
            wanted = _if_match(scope["headers"])
            if wanted is None:
                return await endpoint(*args, **kwargs)
            if suffix is not None:
                path: str = scope["path"]
                if not path.endswith(suffix):
                    raise ConfigurationError(
                        f"precondition(action={action!r}) on {endpoint.__qualname__}: the "
                        f"request's path {path!r} does not end with {suffix!r}"
                    )
                scope = {**scope, "path": path[: -len(suffix)]}
            key, deps = spec.resolve(scope, kwargs, with_query=False)
            expectation = _Expectation(http, spec, key, deps, wanted)
            token = _expected.set(expectation)
            try:
                result = await endpoint(*args, **kwargs)
                if not expectation.checked:
                    await _compare(expectation)  # the endpoint committed nothing
                return result
            finally:
                _expected.reset(token)

        return wrapper  # type: ignore[return-value]

    return decorate


def pending_if_match() -> bool:
    """Whether the request being served has an ``If-Match`` not compared yet."""
    expectation = _expected.get()
    return expectation is not None and not expectation.checked


async def verify_if_match(session: Session) -> None:
    """The ``VERIFY`` commit-phase hook (installed by ``Lockstep``): compare the request's
    ``If-Match``, if any, with the resource's current ETag; PreconditionFailedError (the
    transaction rolls back) on a mismatch, and for a request whose route cannot compare."""
    expectation = _expected.get()
    if expectation is None:
        scope = current_http_scope()
        if (
            scope is not None
            and scope["method"] in UNSAFE
            and _if_match(scope["headers"])
            and interception_of(type(session)).wrote(session)
        ):
            raise PreconditionFailedError(
                "this resource has no validator to compare If-Match with; send the request "
                "without If-Match"
            )
        return
    if not expectation.checked:
        await _compare(expectation)


async def _compare(expectation: _Expectation) -> None:
    cache = expectation.http.cache
    try:
        _, snapshot = await cache.snapshot(expectation.deps, authoritative=True)
    except Exception:
        cache.metrics.errors.labels("read_stamps").inc()
        # Cannot tell whether the resource changed: refuse rather than risk a lost update;
        # the client retries (503 is retryable).
        raise CacheUnavailableError("cannot check If-Match right now; retry") from None
    etag = cache.etag_for(expectation.spec.name, expectation.key, snapshot)
    expectation.checked = True
    if not etag_matches(expectation.wanted, etag):
        raise PreconditionFailedError(
            "the resource changed since you read it (If-Match does not match); "
            "read it again and reapply your change",
            details={"etag": quote_etag(etag)},
        )


def _if_match(headers: list[tuple[bytes, bytes]]) -> str | None:
    return next((v.decode("latin-1") for k, v in headers if k == b"if-match"), None)
