"""``If-Match`` on writes, against the ETag a cached GET route gives the same URL.

    @router.get("/cases/{case_id}")
    @cached(name="case", depends=case_dependencies, vary=org)
    async def get_case(...): ...

    @router.patch("/cases/{case_id}")
    @precondition(get_case)
    async def update_case(...): ...

The write's ``If-Match`` is compared with the ETag ``get_case`` gives this URL (its key
without a query, its dependencies) for this caller. A mismatch answers 412 with the current
ETag in ``details.etag``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from lockstep.exceptions import (
    CacheUnavailableError,
    ConfigurationError,
    PreconditionFailedError,
)
from lockstep.http.caching import RouteCache, current_http_cache, etag_matches, quote_etag

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def route_cache_of(get_route: Callable[..., Any]) -> RouteCache:
    """The :class:`RouteCache` of a ``@cached`` endpoint; ConfigurationError otherwise."""
    spec = getattr(get_route, RouteCache.MARKER, None)
    if not isinstance(spec, RouteCache):
        raise ConfigurationError(
            f"precondition() takes the @cached GET endpoint whose ETag If-Match is compared "
            f"with; {getattr(get_route, '__qualname__', get_route)!r} is not one"
        )
    return spec


def precondition(get_route: Callable[..., Any]) -> Callable[[F], F]:
    """Answer 412 when ``If-Match`` does not match the ETag ``get_route`` (a ``@cached``
    endpoint) gives the request's URL; the write endpoint must take the parameters its
    ``depends``/``vary``/``key`` read (checked when declared)."""
    spec = route_cache_of(get_route)

    def decorate(endpoint: F) -> F:
        names = set(spec.needs)
        accepted = set(_names(endpoint))
        missing = sorted(names - accepted)
        if missing:
            raise ConfigurationError(
                f"precondition({spec.name!r}) on {endpoint.__qualname__}: the endpoint must "
                f"take {missing} (the GET route's key and dependencies read them)"
            )

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            scope, http = current_http_cache()
            wanted = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"if-match"), None
            )
            if wanted is not None:
                key, deps = spec.resolve(scope, kwargs, with_query=False)
                stamped = await http.stamps(deps)
                if stamped is None:
                    # Cannot tell whether the resource changed: refuse rather than risk a
                    # lost update; the client retries (503 is retryable).
                    raise CacheUnavailableError("cannot check If-Match right now; retry")
                etag = http.cache.etag_for(spec.name, key, stamped[1])
                if not etag_matches(wanted, etag):
                    raise PreconditionFailedError(
                        "the resource changed since you read it (If-Match does not match); "
                        "read it again and reapply your change",
                        details={"etag": quote_etag(etag)},
                    )
            return await endpoint(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _names(fn: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)
