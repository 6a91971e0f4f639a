"""``GET /v1/shape``: the Electric Shape HTTP API, served from the shape log.

What the real ``@electric-sql/client`` needs, and what this answers:

* ``offset=-1``: the snapshot, paged by primary key (``electric-offset`` ``<p>_<k>``, no
  ``up-to-date`` until the last page), one consistent snapshot at position ``p`` however
  long the paging takes; then ``snapshot-end`` (which transactions it includes) and
  ``up-to-date`` with offset ``<p>_inf``. ``offset=now`` or ``log=changes_only``: only
  ``up-to-date`` at the head.
* ``offset=<p>_inf``: the shape's changes after ``p``; with ``live=true`` held until there
  are some (or ``long_poll_seconds``, then only ``up-to-date``).
* A handle that is not this definition's (another ``where``, a rotated table, a migrated
  schema, a reset log) or an offset the log no longer holds: 409 ``must-refetch`` with the
  current handle.
* Every 2xx carries ``electric-handle`` and ``electric-offset``; non-live ones
  ``electric-schema``; live ones ``electric-cursor`` (never the request's); ``etag``;
  ``electric-up-to-date`` when the batch ends up to date. Cache-Control follows Electric's
  matrix (``private`` unless the shape is public: the caller's scope selects the rows);
  errors are ``no-store`` envelopes with ``retryable``; nothing is a 500.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import Response

from lockstep.exceptions import DatabaseUnavailableError, LockstepError, NotFoundError
from lockstep.observability.request_context import current_request_id
from lockstep.offline import messages as msg
from lockstep.offline.reader import LogState, ShapeLog
from lockstep.offline.shapes import (
    Offset,
    ResolvedShape,
    ShapeDefinition,
    ShapeRequest,
    resolve,
)

log = structlog.get_logger("lockstep.offline")

MAX_POSITIONS = 1_000
"""Log positions one response covers at most (a client far behind pages through)."""


class MustRefetch(Exception):
    def __init__(self, handle: str) -> None:
        self.handle = handle


def error(
    status: int, code: str, message: str, *, retryable: bool, details: Any = None
) -> Response:
    """The error envelope with ``retryable``, never cached."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "request_id": current_request_id(),
            "details": details,
            "retryable": retryable,
        }
    }
    headers = {"Cache-Control": "no-store"}
    if status in (429, 503):
        headers["Retry-After"] = "1"
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


class ShapeEndpoint:
    """Serves the shapes in ``definitions`` (by their public names) from ``shape_log``."""

    def __init__(
        self,
        definitions: Mapping[str, ShapeDefinition],
        shape_log: ShapeLog,
        *,
        version: str,
        chunk_rows: int,
        long_poll_seconds: float,
    ) -> None:
        self.definitions = definitions
        self.log = shape_log
        self.version = version
        self.chunk_rows = chunk_rows
        self.long_poll_seconds = long_poll_seconds

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._serve(request)
        except MustRefetch as refetch:
            headers = {"electric-handle": refetch.handle, "Cache-Control": "no-store"}
            return Response(orjson.dumps([msg.MUST_REFETCH]), 409, headers, "application/json")
        except LockstepError as exc:
            retryable = exc.status_code == 429 or exc.status_code >= 500
            return error(
                exc.status_code, exc.code, exc.message, retryable=retryable, details=exc.details
            )
        except DBAPIError:
            log.exception("shape_database_error")
            return error(
                503, "database_unavailable", "the database did not answer; retry", retryable=True
            )

    def _resolve(
        self, definition: ShapeDefinition, req: ShapeRequest, scope: Any, state: LogState
    ) -> ResolvedShape:
        return resolve(
            definition,
            req,
            scope,
            generation=state.generation,
            epoch=state.epoch,
            version=self.version,
        )

    async def _serve(self, request: Request) -> Response:
        req = ShapeRequest.parse(request.query_params.multi_items())
        definition = self.definitions.get(req.table)
        if definition is None:
            raise NotFoundError(f"no shape named {req.table[:80]!r}")
        name, offset = definition.shaped.name, req.offset
        read: tuple[LogState, list[msg.Entry]] | None = None
        try:
            scope = await definition.scope_of(request)
            if offset.kind == "log":
                # Changes committed here since the offset are at hand; else one read: the
                # state to check against, and the entries.
                upto = offset.position + MAX_POSITIONS
                read = self.log.recent(name, offset.position, upto)
                if read is None or not read[1]:
                    read = await self.log.entries(name, offset.position, upto)
                state = read[0]
            else:
                state = await self.log.state(name)
        except DBAPIError as exc:
            raise DatabaseUnavailableError("the database did not answer; retry") from exc
        shape = self._resolve(definition, req, scope, state)
        public = definition.shape.scope is None
        if offset.kind == "now" or (offset.kind == "start" and req.changes_only):
            return self._answer(req, shape, [msg.UP_TO_DATE], Offset("log", state.head), public)
        if offset.kind == "start":
            return await self._snapshot(req, definition, scope, shape, public)
        if req.handle != shape.handle:
            raise MustRefetch(shape.handle)
        if offset.position > state.head or offset.position + 1 < state.compacted_below:
            raise MustRefetch(shape.handle)
        if offset.kind == "snapshot":
            return await self._next_page(req, shape, offset, public)
        return await self._changes(req, shape, offset.position, public, read)

    async def _snapshot(
        self,
        req: ShapeRequest,
        definition: ShapeDefinition,
        scope: Any,
        shape: ResolvedShape,
        public: bool,
    ) -> Response:
        limit = self.chunk_rows if definition.paged else None
        read = await self.log.snapshot_page(shape, position=None, after_key=None, limit=limit)
        if read.state.epoch != int(shape.handle.split("-", 1)[0]):
            shape = self._resolve(definition, req, scope, read.state)  # rotated meanwhile
        complete = limit is None or len(read.rows) <= limit
        page = msg.rows_at(
            shape, read.rows, [], after_key=None, limit=limit, current_complete=complete
        )
        rows = msg.inserts(shape, page.rows)
        out: list[dict[str, Any]] = []
        if read.visible is not None:
            xmin, xmax, xip = read.visible
            out.append(
                {
                    "headers": {
                        "control": "snapshot-end",
                        "xmin": xmin,
                        "xmax": xmax,
                        "xip_list": xip,
                    }
                }
            )
        head = read.state.head
        if page.last_key is None:
            out.append(msg.UP_TO_DATE)
            return self._answer(req, shape, out, Offset("log", head), public, rows)
        return self._answer(req, shape, out, Offset("snapshot", head, page.last_key), public, rows)

    async def _next_page(
        self, req: ShapeRequest, shape: ResolvedShape, offset: Offset, public: bool
    ) -> Response:
        limit = self.chunk_rows
        read = await self.log.snapshot_page(
            shape, position=offset.position, after_key=offset.last_key, limit=limit
        )
        if any(e.key is None for e in read.since) or read.state.epoch != _epoch(shape):
            raise MustRefetch(_with_epoch(shape, read.state.epoch))
        page = msg.rows_at(
            shape,
            read.rows,
            read.since,
            after_key=offset.last_key,
            limit=limit,
            current_complete=len(read.rows) <= limit,
        )
        rows = msg.inserts(shape, page.rows)
        out: list[dict[str, Any]] = []
        if page.last_key is None:
            out.append(msg.UP_TO_DATE)
            return self._answer(req, shape, out, Offset("log", offset.position), public, rows)
        return self._answer(
            req, shape, out, Offset("snapshot", offset.position, page.last_key), public, rows
        )

    async def _changes(
        self,
        req: ShapeRequest,
        shape: ResolvedShape,
        position: int,
        public: bool,
        read: tuple[LogState, list[msg.Entry]] | None,
    ) -> Response:
        """``read``: the state and entries after ``position`` already read for this request."""
        deadline = time.monotonic() + self.long_poll_seconds
        name = shape.definition.shaped.name
        while True:
            if read is None:
                read = await self.log.entries(name, position, position + MAX_POSITIONS)
            (state, entries), read = read, None
            if any(e.key is None for e in entries) or state.epoch != _epoch(shape):
                raise MustRefetch(_with_epoch(shape, state.epoch))
            upto = min(position + MAX_POSITIONS, state.head)
            out = msg.changes(shape, entries)
            position = upto
            if out or not req.live or upto < state.head:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self.log.wait_beyond(position, remaining)
            # Woken by this process's commit: what it logged is at hand, no read needed.
            read = self.log.recent(name, position, position + MAX_POSITIONS, state)
        if upto == state.head:
            out.append(msg.UP_TO_DATE)
        return self._answer(req, shape, out, Offset("log", position), public)

    def _answer(
        self,
        req: ShapeRequest,
        shape: ResolvedShape,
        body: list[dict[str, Any]],
        offset: Offset,
        public: bool,
        encoded: bytes = b"",
    ) -> Response:
        """``body``'s messages, after the ``encoded`` ones (:func:`msg.inserts`)."""
        visibility = "public" if public else "private"
        headers = {
            "electric-handle": shape.handle,
            "electric-offset": offset.text(),
            "etag": f'"{shape.handle}:{req.offset.text()}:{offset.text()}"',
            "Vary": "Authorization",
        }
        if body and body[-1] is msg.UP_TO_DATE:
            headers["electric-up-to-date"] = ""
        if req.live:
            headers["electric-cursor"] = _next_cursor(req.cursor, self.long_poll_seconds)
            headers["Cache-Control"] = f"{visibility}, max-age=5, stale-while-revalidate=5"
        else:
            codecs = shape.definition.codecs
            schema = {c: codecs[c].schema() for c in shape.columns}
            headers["electric-schema"] = orjson.dumps(schema).decode()
            if req.offset.kind == "start":
                headers["Cache-Control"] = (
                    f"{visibility}, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746"
                )
            else:
                headers["Cache-Control"] = f"{visibility}, max-age=60, stale-while-revalidate=300"
        content = orjson.dumps(body)
        if encoded:
            content = b"[" + encoded + (b"," + content[1:] if body else b"]")
        return Response(content, 200, headers, media_type="application/json")


def _epoch(shape: ResolvedShape) -> int:
    return int(shape.handle.split("-", 1)[0])


def _with_epoch(shape: ResolvedShape, epoch: int) -> str:
    """The handle of the same definition after the table rotated to ``epoch``."""
    return f"{epoch}-{shape.handle.split('-', 1)[1]}"


def _next_cursor(previous: str | None, interval: float) -> str:
    """Electric's live cache buster: the current interval's number, never the one the
    request came with (a CDN must not answer the next long poll from this one)."""
    current = int(time.time() // max(interval, 1.0))
    if previous is not None and previous.isdigit() and int(previous) >= current:
        current = int(previous) + 1
    return str(current)
