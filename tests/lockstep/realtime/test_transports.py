"""The WebSocket endpoint's writer, over a stand-in ASGI socket whose sends can be made to
wait (as uvicorn's do while the client does not read): a frame to a socket that takes it
leaves at once with no task; while a send waits, frames queue (bounded) and leave after it,
in order, in one frame; past the bound the connection is closed with 3008."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from lockstep.db import Database
from lockstep.realtime import Credentials, Namespace, Realtime
from lockstep.realtime.connection import Connection
from lockstep.realtime.protocol import Publication
from lockstep.realtime.transports import websocket_endpoint

from ...conftest import build_settings

LIMIT = 2048  # LOCKSTEP_REALTIME_CLIENT_QUEUE_BYTES for these tests


class Socket:
    """The ASGI side of one WebSocket: what the app sent, and a gate that, while set, makes
    every send wait (a client that does not read)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gate: asyncio.Future[None] | None = None
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.changed = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        if self.gate is not None:
            await self.gate
        self.sent.append(message)
        self.changed.set()

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                self.changed.clear()
                await self.changed.wait()


async def anyone(request: Any) -> Credentials:
    return Credentials(user=request.token)


async def allowed(_credentials: Credentials, _channel: str) -> None:
    return None


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Realtime]:
    settings = build_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'test.db'}",
        tmp_path,
        realtime_client_queue_bytes=LIMIT,
    )
    database = Database(settings)
    realtime = Realtime(
        settings,
        database,
        authenticate=anyone,
        namespaces=[Namespace("live", authorize=allowed, history=False)],
    )
    try:
        async with realtime.lifespan():
            yield realtime
    finally:
        await database.dispose()


@pytest.fixture
async def client(server: Realtime) -> AsyncIterator[tuple[Socket, Connection]]:
    """A client connected and subscribed to ``live:1``."""
    socket = Socket()
    hello = [{"id": 1, "connect": {"token": "u"}}, {"id": 2, "subscribe": {"channel": "live:1"}}]
    await socket.incoming.put({"type": "websocket.connect"})
    text = b"\n".join(orjson.dumps(c) for c in hello).decode()
    await socket.incoming.put({"type": "websocket.receive", "text": text})
    app = websocket_endpoint(server)
    task = asyncio.create_task(
        app({"type": "websocket", "headers": []}, socket.receive, socket.send)
    )
    await socket.until(lambda: sum(t.count('"id"') for t in socket.texts()) == 2)
    (connection,) = server.connections
    yield socket, connection
    if socket.gate is not None and not socket.gate.done():
        socket.gate.set_result(None)
    await socket.incoming.put({"type": "websocket.disconnect", "code": 1000})
    await task


def pub(n: int, size: int = 10) -> Publication:
    return Publication("live:1", orjson.dumps({"n": n, "pad": "x" * size}))


def frame(n: int, size: int = 10) -> str:
    return pub(n, size).frame(uni=False)


async def test_a_frame_to_a_socket_that_takes_it_leaves_at_once_without_a_task(
    server: Realtime, client: tuple[Socket, Connection]
) -> None:
    socket, connection = client
    before = len(socket.texts())
    tasks = len(asyncio.all_tasks())
    await server.hub.deliver(pub(1))
    assert socket.texts()[before:] == [frame(1)]  # sent within the hub's own loop
    assert len(asyncio.all_tasks()) == tasks
    assert not connection.writing


async def test_while_a_send_waits_frames_queue_and_leave_after_it_in_order(
    server: Realtime, client: tuple[Socket, Connection]
) -> None:
    socket, connection = client
    before = len(socket.texts())
    tasks = len(asyncio.all_tasks())
    socket.gate = asyncio.get_running_loop().create_future()
    await server.hub.deliver(pub(1))
    assert connection.writing  # its send waits on the client: a writer task finishes it
    assert len(asyncio.all_tasks()) == tasks + 1
    await server.hub.deliver(pub(2))
    await server.hub.deliver(pub(3))
    assert socket.texts()[before:] == []
    socket.gate.set_result(None)
    socket.gate = None
    await socket.until(lambda: not connection.writing)
    assert socket.texts()[before:] == [frame(1), f"{frame(2)}\n{frame(3)}"]
    await server.hub.deliver(pub(4))  # and once drained, at once again
    assert socket.texts()[-1] == frame(4)
    assert connection.closed is None


async def test_a_client_that_does_not_read_is_closed_with_3008_past_the_bound(
    server: Realtime, client: tuple[Socket, Connection]
) -> None:
    socket, connection = client
    socket.gate = asyncio.get_running_loop().create_future()
    size = 500
    await server.hub.deliver(pub(0, size))  # waits in the writer: not counted in the bound
    fits = LIMIT // len(frame(1, size))
    for n in range(1, fits + 1):
        await server.hub.deliver(pub(n, size))
        assert connection.closed is None, f"closed after {n} queued"
    await server.hub.deliver(pub(99, size))  # one more than the bound holds
    assert connection.closed is not None
    assert connection.closed.code == 3008
    assert connection.subscriptions == {}
    assert server.hub.channels.get("live:1") is None
    socket.gate.set_result(None)
    socket.gate = None
    await socket.until(lambda: any(m["type"] == "websocket.close" for m in socket.sent))
    close = next(m for m in socket.sent if m["type"] == "websocket.close")
    assert (close["code"], close["reason"]) == (3008, "slow")
    assert not any('"n":99' in text for text in socket.texts())
