"""The composition of offline sync for one database: shapes, the shape log, the routes.

    offline = Offline(database, runtime.changes, shapes=[Shape(Case.__table__, scope=...)],
                      mutations=mutations, version=head_revision(MIGRATIONS))
    offline.install(app)        # GET /v1/shape, POST /sync/push, /lockstep/ (lockstep.js)
                                # and, with scopes=[SyncScope(...)], GET /v1/sync/scopes/{name}

Build it after the change feed (a :class:`~lockstep.Lockstep` or :class:`~lockstep.Changes`):
its write observer must commit after the feed's, to give shape messages the feed's
transaction ids. ``version`` names the schema (an Alembic head): a new one is a new handle
for every shape, so a migration makes clients refetch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path
from fastapi.params import Depends
from starlette.requests import Request
from starlette.responses import Response

from lockstep.changes import Changes
from lockstep.db import Database
from lockstep.exceptions import ConfigurationError
from lockstep.offline.browser import BrowserModule
from lockstep.offline.capture import MAX_ROWS, ShapeCapture, ShapedTable
from lockstep.offline.endpoint import ShapeEndpoint
from lockstep.offline.mutations import Mutations
from lockstep.offline.push import PushEndpoint
from lockstep.offline.reader import ShapeLog
from lockstep.offline.scopes import SCOPES_PATH, ScopeOut, ScopeRegistry, SyncScope
from lockstep.offline.shapes import Shape, ShapeDefinition

SHAPE_PATH = "/v1/shape"
PUSH_PATH = "/sync/push"


class Offline:
    """Electric shapes over ``database``'s writes, fed by ``changes``."""

    def __init__(
        self,
        database: Database,
        changes: Changes,
        *,
        shapes: Sequence[Shape],
        mutations: Mutations | None = None,
        scopes: Sequence[SyncScope] = (),
        version: str = "",
        chunk_rows: int = 10_000,
        long_poll_seconds: float = 20.0,
        max_logged_rows: int = MAX_ROWS,
    ) -> None:
        self.database = database
        self.changes = changes
        tables: dict[str, ShapedTable] = {}
        self.definitions: dict[str, ShapeDefinition] = {}
        for shape in shapes:
            name = str(shape.table.name)
            if changes.tracking.spec(name) is None:
                raise ConfigurationError(
                    f"shape {shape.public_name!r}: table {name!r} is not tracked by the change "
                    "feed (its writes would carry no transaction id)"
                )
            shaped = tables.setdefault(name, ShapedTable(shape.table))
            if shape.public_name in self.definitions:
                raise ConfigurationError(f"two shapes are named {shape.public_name!r}")
            self.definitions[shape.public_name] = ShapeDefinition(shape, shaped)
        self.scopes = ScopeRegistry(scopes, self.definitions)
        poll = database.settings.feed_poll_seconds
        self.log = ShapeLog(database, poll_interval=poll)
        # Waiters wake from the commit itself (its position and entries); the log's poll
        # is only for other processes' commits.
        self.capture = ShapeCapture(tables, max_rows=max_logged_rows, on_commit=self.log.advance)
        database.observe(self.capture)
        self.mutations = mutations
        # After the change feed's observer, like the shape log's: answers carry its txid.
        self.push = None if mutations is None else PushEndpoint(database, mutations)
        self.browser = BrowserModule()
        self.endpoint = ShapeEndpoint(
            self.definitions,
            self.log,
            version=version,
            chunk_rows=chunk_rows,
            long_poll_seconds=long_poll_seconds,
        )

    def install(
        self,
        app: FastAPI,
        *,
        prefix: str = "",
        browser: bool = True,
        scope_dependencies: Sequence[Depends] = (),
    ) -> None:
        """Add ``GET /v1/shape`` (and the push route, when mutations are registered); with
        ``browser``, the browser module too: ``lockstep.js`` at ``self.browser.module_url``
        and its service worker at ``/lockstep/sw.js`` (:mod:`lockstep.offline.browser`).
        With sync scopes, ``GET /v1/sync/scopes/{name}`` (in the OpenAPI document;
        ``scope_dependencies``, e.g. the app's bearer scheme, are added to it)."""
        if browser:
            self.browser.install(app)
        app.add_route(
            prefix + SHAPE_PATH, self.endpoint.__call__, methods=["GET"], include_in_schema=False
        )
        if self.push is not None:
            app.add_route(
                prefix + PUSH_PATH, self.push.__call__, methods=["POST"], include_in_schema=False
            )
        if self.scopes.scopes:
            self._install_scopes(app, prefix, list(scope_dependencies))

    def _install_scopes(self, app: FastAPI, prefix: str, dependencies: list[Depends]) -> None:
        registry = self.scopes

        async def sync_scope(
            request: Request,
            name: Annotated[str, Path(min_length=1, max_length=64)],
        ) -> Response:
            """A sync scope bound to the caller: the shapes to sync, in priority order, as
            ``GET /v1/shape`` params, and the paths to prefetch (docs/offline.md)."""
            answer = await registry.answer(name, request)
            body = orjson.dumps(answer.model_dump())
            etag = f'"{answer.version}"'
            headers = {"ETag": etag, "Cache-Control": "private, no-cache", "Vary": "Authorization"}
            match = request.headers.get("if-none-match", "")
            if etag in [t.strip().removeprefix("W/") for t in match.split(",")]:
                return Response(status_code=304, headers=headers)
            return Response(body, 200, headers, media_type="application/json")

        app.add_api_route(
            prefix + SCOPES_PATH + "/{name}",
            sync_scope,
            methods=["GET"],
            response_model=ScopeOut,
            responses={403: {"description": "Forbidden (error code `permission_denied`)"}},
            dependencies=dependencies,
            tags=["offline"],
            operation_id="sync_scope",
            summary="A sync scope for the caller",
        )

    async def compact(self, *, older_than: dt.timedelta) -> int:
        """Delete shape-log entries older than ``older_than`` (see :meth:`ShapeLog.compact`)."""
        return await self.log.compact(older_than=older_than)

    async def stop(self) -> None:
        await self.log.stop()

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.stop()
