"""Sync scopes: what a client should sync first, declared by the app, bound to the caller.

A :class:`SyncScope` names an ordered list of :class:`ScopeShape` (a declared shape, a
``where``/``params`` template and a priority) and a prefetch list (GET URLs to warm a
client's cache). ``GET /v1/sync/scopes/{name}`` binds it to the caller (``bind(request)``,
the app's own query: "my assigned open cases") and answers the shapes to sync in priority
order, each as the Electric ``params`` of an ordinary ``GET /v1/shape`` request::

    {"scope": "my-cases", "version": "5c0f…",
     "shapes": [{"name": "cases", "priority": 0,
                 "params": {"table": "cases", "where": "assignee_id = $1", "params": ["7"]}},
                {"name": "subjects", "priority": 1, "params": {...}}, ...],
     "prefetch": ["/api/v1/cases/3", ...]}

A scope never widens access: its shapes are served by ``/v1/shape``, which ANDs the
shape's own scope (the caller's tenant, role) around any ``where``; answering a scope
also evaluates each shape's scope for the caller (a caller refused a shape is refused the
scope) and parses each bound ``where`` against the shape's declared columns.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.requests import Request

from lockstep.exceptions import ConfigurationError, NotFoundError
from lockstep.offline import filters
from lockstep.offline.shapes import ShapeDefinition

SCOPES_PATH = "/v1/sync/scopes"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")

Binder = Callable[[Request], Any]
Template = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class ScopeShape:
    """One shape of a scope. ``shape``: a declared shape's name (what ``table=`` takes).
    ``where``: text or ``where(bound)``; ``params``: a sequence or ``params(bound)`` (``$1``
    is the first; values are sent as text). Lower ``priority`` syncs first; equal ones in
    declaration order. ``name``: its key in the answer (default ``shape``; unique)."""

    shape: str
    where: str | Template | None = None
    params: Sequence[Any] | Template = ()
    priority: int = 0
    columns: Sequence[str] | None = None
    name: str | None = None

    @property
    def key(self) -> str:
        return self.name or self.shape


@dataclass(frozen=True, slots=True)
class SyncScope:
    """A named, ordered set of shapes a client syncs together (see the module).

    ``bind(request)`` (sync or async) returns what the templates read (raise
    ``AuthenticationError``/``PermissionDeniedError`` to refuse); ``prefetch`` is a
    sequence of same-origin paths or ``prefetch(bound)``."""

    name: str
    shapes: Sequence[ScopeShape]
    bind: Binder | None = None
    prefetch: Sequence[str] | Template = ()


def in_list(column: str, values: Sequence[Any], *, start: int = 1) -> str:
    """``column IN ($start, $start+1, ...)`` for ``len(values)`` parameters, or ``FALSE``
    when there are none (an empty ``IN`` is not SQL)."""
    if not NAME.fullmatch(column):
        raise ConfigurationError(f"in_list: {column!r} is not a plain column name")
    if not values:
        return "FALSE"
    return f"{column} IN ({', '.join(f'${start + i}' for i in range(len(values)))})"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        raise ConfigurationError("a scope parameter is None (use IS NULL in the where)")
    return str(getattr(value, "value", value))


class ScopeShapeOut(BaseModel):
    name: str = Field(description="the shape's key in this scope")
    priority: int = Field(description="lower syncs first; equal priorities together")
    params: dict[str, Any] = Field(
        description="Electric ShapeStream params for GET /v1/shape: table, where, params "
        "(a list of text values, $1 first), columns"
    )


class ScopeOut(BaseModel):
    """A sync scope bound to the caller: its shapes in the order to sync them."""

    scope: str
    version: str = Field(description="changes when the bound shapes or prefetch list do")
    shapes: list[ScopeShapeOut]
    prefetch: list[str] = Field(description="same-origin GET paths to warm the cache with")


class ScopeRegistry:
    """The app's scopes, checked against its shape definitions."""

    def __init__(
        self, scopes: Sequence[SyncScope], definitions: Mapping[str, ShapeDefinition]
    ) -> None:
        self.definitions = definitions
        self.scopes: dict[str, SyncScope] = {}
        for scope in scopes:
            if not NAME.fullmatch(scope.name):
                raise ConfigurationError(f"sync scope name {scope.name!r} is not [a-z0-9._-]")
            if scope.name in self.scopes:
                raise ConfigurationError(f"two sync scopes are named {scope.name!r}")
            if not scope.shapes:
                raise ConfigurationError(f"sync scope {scope.name!r} has no shapes")
            keys = [s.key for s in scope.shapes]
            if len(set(keys)) != len(keys):
                raise ConfigurationError(f"sync scope {scope.name!r} repeats a shape name")
            for item in scope.shapes:
                definition = definitions.get(item.shape)
                if definition is None:
                    raise ConfigurationError(
                        f"sync scope {scope.name!r} names {item.shape!r}, not a declared shape"
                    )
                unknown = [c for c in item.columns or () if c not in definition.codecs]
                if unknown:
                    raise ConfigurationError(f"sync scope {scope.name!r}: columns {unknown}")
            self.scopes[scope.name] = scope

    def get(self, name: str) -> SyncScope:
        """The scope named ``name``; anything else (whatever its spelling) is a 404."""
        scope = self.scopes.get(name) if NAME.fullmatch(name) else None
        if scope is None:
            raise NotFoundError("no such sync scope")
        return scope

    async def answer(self, name: str, request: Request) -> ScopeOut:
        """``name`` bound to ``request``'s caller; raises what a shape's scope or the binder
        raises (401/403), a 404 for an unknown name."""
        scope = self.get(name)
        bound = None
        if scope.bind is not None:
            bound = scope.bind(request)
            if inspect.isawaitable(bound):
                bound = await bound
        ordered = sorted(enumerate(scope.shapes), key=lambda pair: (pair[1].priority, pair[0]))
        shapes: list[ScopeShapeOut] = []
        for _, item in ordered:
            definition = self.definitions[item.shape]
            await definition.scope_of(request)  # the caller may read this shape at all
            params = bind_shape(item, definition, bound)
            shapes.append(ScopeShapeOut(name=item.key, priority=item.priority, params=params))
        prefetch = scope.prefetch(bound) if callable(scope.prefetch) else scope.prefetch
        paths = [str(p) for p in prefetch]
        for path in paths:
            if not path.startswith("/") or path.startswith("//"):
                raise ConfigurationError(f"prefetch {path[:80]!r} is not a same-origin path")
        body = [s.model_dump() for s in shapes], paths
        version = hashlib.sha256(orjson.dumps(body)).hexdigest()[:20]
        return ScopeOut(scope=scope.name, version=version, shapes=shapes, prefetch=paths)


def bind_shape(item: ScopeShape, definition: ShapeDefinition, bound: Any) -> dict[str, Any]:
    """The Electric params of ``item`` for ``bound``; its ``where`` checked against the
    shape's columns (an app's template that does not parse is a configuration error)."""
    where = item.where(bound) if callable(item.where) else item.where
    raw = item.params(bound) if callable(item.params) else item.params
    params = [_text(v) for v in raw]
    if where is not None:
        numbered = {str(i + 1): v for i, v in enumerate(params)}
        try:
            filters.parse(where, definition.codecs, numbered)
        except filters.FilterError as exc:
            raise ConfigurationError(f"scope shape {item.key!r}: {exc.message}") from exc
    out: dict[str, Any] = {"table": item.shape}
    if where is not None:
        out["where"] = where
        if params:
            out["params"] = params
    if item.columns is not None:
        out["columns"] = ",".join(dict.fromkeys([*definition.shaped.key, *item.columns]))
    return out
