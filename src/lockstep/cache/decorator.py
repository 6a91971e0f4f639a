"""``@cache.cached(...)``: memoize an async function on the exact cache.

The wrapped function keeps its signature (type checkers see the original), and a hit
returns the declared return type: values read back from a shared store are validated into
the annotated type (pydantic models, dataclasses, lists of them, ``None``) with pydantic's
TypeAdapter, so a hit is indistinguishable from a miss.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from pydantic import TypeAdapter

from lockstep.cache.dependencies import Dependency
from lockstep.exceptions import ConfigurationError

if TYPE_CHECKING:
    from lockstep.cache.cache import Cache, Codec

P = ParamSpec("P")
R = TypeVar("R")


def _codec_for(fn: Callable[..., Any]) -> Codec:
    hints = typing.get_type_hints(fn)
    if "return" not in hints:
        raise ConfigurationError(
            f"{fn.__qualname__} needs a return annotation to be cached (it decides how a "
            "cached value is read back)"
        )
    adapter: TypeAdapter[Any] = TypeAdapter(hints["return"])
    return (adapter.dump_json, adapter.validate_json)


def memoize(
    cache: Cache,
    *,
    depends: Callable[..., Sequence[Dependency]],
    key: Callable[..., Hashable] | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate ``async def f(...) -> T``: results are cached under ``key(*args)`` (default:
    all arguments) while ``depends(*args)`` are unchanged."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        label = name or f"{fn.__module__}.{fn.__qualname__}"
        codec = _codec_for(fn)
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            deps = depends(*bound.args, **bound.kwargs)
            cache.check(deps)
            cache_key = key(*bound.args, **bound.kwargs) if key else tuple(bound.arguments.items())

            async def compute() -> R:
                return await fn(*args, **kwargs)

            found = await cache.get_or_compute(label, cache_key, deps, compute, codec=codec)
            return found.value

        return wrapper

    return decorate
