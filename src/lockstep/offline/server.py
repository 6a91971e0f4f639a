"""The composition of offline sync for one database: shapes, the shape log, the routes.

    offline = Offline(database, runtime.changes, shapes=[Shape(Case.__table__, scope=...)],
                      mutations=mutations, version=head_revision(MIGRATIONS))
    offline.install(app)        # GET /v1/shape, POST /sync/push, /lockstep/ (lockstep.js)

Build it after the change feed (a :class:`~lockstep.Lockstep` or :class:`~lockstep.Changes`):
its write observer must commit after the feed's, to give shape messages the feed's
transaction ids. ``version`` names the schema (an Alembic head): a new one is a new handle
for every shape, so a migration makes clients refetch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from lockstep.changes import Changes
from lockstep.db import Database
from lockstep.exceptions import ConfigurationError
from lockstep.offline.browser import BrowserModule
from lockstep.offline.capture import MAX_ROWS, ShapeCapture, ShapedTable
from lockstep.offline.endpoint import ShapeEndpoint
from lockstep.offline.mutations import Mutations
from lockstep.offline.push import PushEndpoint
from lockstep.offline.reader import ShapeLog
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
        poll = database.settings.feed_poll_seconds
        self.log = ShapeLog(database, poll_interval=poll)
        # Waiters wake from the commit itself (its position); the log's poll is only for
        # other processes' commits.
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

    def install(self, app: FastAPI, *, prefix: str = "", browser: bool = True) -> None:
        """Add ``GET /v1/shape`` (and the push route, when mutations are registered); with
        ``browser``, the browser module too: ``lockstep.js`` at ``self.browser.module_url``
        and its service worker at ``/lockstep/sw.js`` (:mod:`lockstep.offline.browser`)."""
        if browser:
            self.browser.install(app)
        app.add_route(
            prefix + SHAPE_PATH, self.endpoint.__call__, methods=["GET"], include_in_schema=False
        )
        if self.push is not None:
            app.add_route(
                prefix + PUSH_PATH, self.push.__call__, methods=["POST"], include_in_schema=False
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
