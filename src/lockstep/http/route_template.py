"""Which route template served a request — the bounded label for metrics and logs.

What the routers leave in the scope after a request (checked against Starlette 1.10 and
FastAPI 0.165):

* Starlette's ``Router`` sets ``scope["route"]``; FastAPI's router does not, but its
  ``APIRoute`` does (``route.path_format`` is the template, converters stripped).
* A route reached through ``include_router`` is the router's *original* ``APIRoute``
  (``/{uid}``); the prefixed template (``/v1/users/{uid}``) is only in FastAPI's effective
  route context, ``scope["fastapi"]["effective_route_context"].path_format``.
* A plain Starlette ``Route`` inside a FastAPI app (``/docs``, our probes) sets only
  ``scope["endpoint"]``; so does a mounted non-router app (``StaticFiles``, raw ASGI).
* A ``Mount`` passes the *same* scope to the sub-app after appending the matched prefix to
  ``scope["root_path"]``, so the prefix a request was routed through is the growth of
  ``root_path`` during the call. The server's own ``root_path`` (``--root-path /api``)
  is there before the call and so never becomes part of a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Mount
from starlette.types import Scope

UNMATCHED = "<unmatched>"
"""The one label of every request no route matched (404s for unknown paths, slash redirects)."""

_MAX_CACHED = 1024  # bounds memory if mounts carry path parameters (/tenants/{id})
_MOUNT_SUFFIX = "/{path}"


class RouteTemplates:
    """Resolve the template of the route that handled a request, e.g. ``/admin/items/{id}``.

    Call :meth:`resolve` after the app returned, with the ``root_path`` the scope had before
    the call. Mount prefixes map back to their templates (``/tenants/7`` →
    ``/tenants/{tid}``); lookups that need a walk of the route table are cached, so the
    common cases cost a few attribute reads.
    """

    def __init__(self) -> None:
        self._prefixes: dict[str, tuple[str, Mount | None, Sequence[BaseRoute]]] = {}
        self._endpoints: dict[tuple[str, int], tuple[Any, str, bool]] = {}

    def resolve(self, scope: Scope, root_path_before: str, status: int) -> str:
        """The template, ``<prefix>/{path}`` for a mounted non-router app, or ``UNMATCHED``."""
        root_path: str = scope.get("root_path", "")
        raw_prefix = root_path[len(root_path_before) :] if root_path != root_path_before else ""

        fastapi_scope = scope.get("fastapi")
        if fastapi_scope:
            context = fastapi_scope.get("effective_route_context")
            if context is not None:
                template = getattr(context, "path_format", None)
                if isinstance(template, str) and template:
                    return self._prefix(scope, raw_prefix)[0] + template if raw_prefix else template

        route = scope.get("route")
        if route is not None and not isinstance(route, Mount):
            template = getattr(route, "path_format", None)
            if isinstance(template, str):
                # No mount in between (the common case): the template is the route's own.
                return self._prefix(scope, raw_prefix)[0] + template if raw_prefix else template

        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        return self._from_endpoint(scope, raw_prefix, endpoint, status)

    def _prefix(
        self, scope: Scope, raw_prefix: str
    ) -> tuple[str, Mount | None, Sequence[BaseRoute]]:
        cached = self._prefixes.get(raw_prefix)
        if cached is None:
            top_routes = getattr(scope.get("router"), "routes", ())
            cached = walk_mounts(top_routes, raw_prefix)
            if len(self._prefixes) < _MAX_CACHED:
                self._prefixes[raw_prefix] = cached
        return cached

    def _from_endpoint(self, scope: Scope, raw_prefix: str, endpoint: Any, status: int) -> str:
        key = (raw_prefix, id(endpoint))
        cached = self._endpoints.get(key)
        # Holding the endpoint in the value keeps its id from being reused by another object.
        if cached is None or cached[0] is not endpoint:
            prefix, last_mount, routes = self._prefix(scope, raw_prefix)
            if last_mount is not None and endpoint is last_mount.app:
                template, is_mounted_app = prefix + _MOUNT_SUFFIX, True
            else:
                found = _route_for_endpoint(routes, endpoint, scope)
                if found is None:
                    return UNMATCHED
                template, unique = found
                template, is_mounted_app = prefix + template, False
                if not unique:
                    return template
            cached = (endpoint, template, is_mounted_app)
            if len(self._endpoints) < _MAX_CACHED:
                self._endpoints[key] = cached
        # A mounted router app answers 404 when nothing inside it matched.
        if cached[2] and status == 404:
            return UNMATCHED
        return str(cached[1])


def walk_mounts(
    routes: Sequence[BaseRoute], raw_prefix: str
) -> tuple[str, Mount | None, Sequence[BaseRoute]]:
    """Map the concrete path consumed by nested mounts back to their templates.

    Returns the template prefix, the innermost mount and its routes. A part no mount
    accounts for (a prefix set by custom middleware) is kept as is.
    """
    parts: list[str] = []
    remaining = raw_prefix
    last: Mount | None = None
    while remaining:
        matched = _match_mount(routes, remaining)
        if matched is None:
            parts.append(remaining)
            return "".join(parts), None, ()
        last, remaining = matched
        parts.append(last.path_format.removesuffix(_MOUNT_SUFFIX))
        routes = last.routes
    return "".join(parts), last, routes


def _match_mount(routes: Sequence[BaseRoute], remaining: str) -> tuple[Mount, str] | None:
    candidate = remaining + "/"
    for route in routes:
        if not isinstance(route, Mount):
            continue
        match = route.path_regex.match(candidate)
        if match is None:
            continue
        consumed = candidate[: len(candidate) - len(match.group("path")) - 1]
        if consumed and remaining.startswith(consumed):
            return route, remaining[len(consumed) :]
    return None


def _route_for_endpoint(
    routes: Sequence[BaseRoute], endpoint: Any, scope: Scope
) -> tuple[str, bool] | None:
    """The template of the route in ``routes`` serving ``endpoint``, and whether it is the
    only such route (if not, the request path decides, and the answer cannot be cached)."""
    candidates = [r for r in routes if getattr(r, "endpoint", None) is endpoint]
    templates = [getattr(r, "path_format", None) for r in candidates]
    if len(candidates) == 1 and isinstance(templates[0], str):
        return templates[0], True
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    route_path = path[len(root_path) :] if root_path and path.startswith(root_path) else path
    for route, template in zip(candidates, templates, strict=True):
        regex = getattr(route, "path_regex", None)
        if isinstance(template, str) and regex is not None and regex.match(route_path):
            return template, False
    return None
