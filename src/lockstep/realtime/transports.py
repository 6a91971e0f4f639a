"""The two endpoints, as plain ASGI apps: bidirectional WebSocket (what the SDKs use) and
unidirectional Server-Sent Events.

* ``/connection/websocket``: text frames of newline-separated JSON both ways; the server
  batches whatever is queued into one frame. The connection is closed with the protocol's
  close code and reason (3008 slow, 3012 no pong, ...).
* ``/connection/uni_sse``: the connect request is a POST body, or the ``cf_connect`` query
  parameter of a GET (what a browser ``EventSource`` can send). A token is never accepted in
  the URL (URLs end up in access logs and proxies): put it in an ``Authorization: Bearer``
  header or the POST body. Every push is one ``data:`` event; the first is ``connect`` (or
  ``disconnect`` when refused), ``{}`` are pings.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockstep.realtime import eager
from lockstep.realtime.connection import Connection
from lockstep.realtime.protocol import Disconnect
from lockstep.realtime.server import Realtime

CLIENT_CLOSED = Disconnect(0, "connection closed")
CLOSE_SECONDS = 5.0
"""How long a closing connection waits for its last frames and close frame to be taken."""


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def websocket_endpoint(server: Realtime) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await _plain(send, 404, b"realtime: connect with a WebSocket")
            return
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        connection = Connection(server, transport="websocket", uni=False, headers=_headers(scope))
        writer: asyncio.Task[None] | None = None
        closer: asyncio.Task[None] | None = None
        gone = False

        async def write(frame: str) -> None:
            nonlocal writer
            try:
                await send({"type": "websocket.send", "text": frame})
                while frames := connection.take():  # what queued while the send waited
                    await send({"type": "websocket.send", "text": "\n".join(frames)})
            except asyncio.CancelledError:
                if connection.closed is None:
                    raise
            except Exception:  # the client went away mid-write
                connection.close(CLIENT_CLOSED)
            finally:
                writer, connection.writing = None, False

        def write_now(frame: str) -> None:
            nonlocal writer
            connection.writing = True
            # The frame goes out now if the socket takes it without waiting: no task, the
            # hub's loop over subscribers writes like a plain broadcast loop. A writer task
            # exists only while a client's socket makes it wait; meanwhile frames queue.
            writer = eager.start(write(frame))

        async def close_with(disconnect: Disconnect) -> None:
            with contextlib.suppress(Exception):
                await send(
                    {
                        "type": "websocket.close",
                        "code": disconnect.code,
                        "reason": disconnect.reason,
                    }
                )

        def closing(disconnect: Disconnect) -> None:
            nonlocal closer
            if writer is not None:
                writer.cancel()  # it may be waiting on a client that does not read
            if disconnect.code and not gone:
                closer = asyncio.create_task(close_with(disconnect))

        connection.write = write_now
        connection.on_close = closing
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    gone = True
                    break
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                await connection.handle_frame(data)
                if connection.closed is not None:
                    break
        finally:
            connection.close(CLIENT_CLOSED)
            for task in (writer, closer):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                        async with asyncio.timeout(CLOSE_SECONDS):
                            await task

    return app


def sse_endpoint(server: Realtime) -> ASGIApp:
    limit = server.settings.realtime_max_frame_bytes

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if method == "GET":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            raw = query.get("cf_connect", ["{}"])[0].encode()
        elif method == "POST":
            raw = await _body(receive, limit)
            if raw is None:
                await _plain(send, 413, b"connect request too large")
                return
        else:
            await _plain(send, 405, b"GET or POST")
            return
        try:
            params = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            params = None
        if not isinstance(params, dict):
            await _plain(send, 400, b"the connect request must be a JSON object")
            return
        if method == "GET" and params.get("token"):
            await _plain(
                send,
                400,
                b"a token in a URL ends up in access logs: send it in an Authorization: Bearer "
                b"header or in the body of a POST",
            )
            return
        connection = Connection(server, transport="uni_sse", uni=True, headers=_headers(scope))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"private, no-cache, no-store, must-revalidate, max-age=0"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"\r\n", "more_body": True})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            connection.close(CLIENT_CLOSED)

        watcher = asyncio.create_task(watch())
        try:
            await connection.connect_unidirectional(params)
            while (frames := await connection.outgoing()) is not None:
                body = "".join(f"data: {frame}\n\n" for frame in frames).encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            connection.close(CLIENT_CLOSED)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    return app


async def _body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
