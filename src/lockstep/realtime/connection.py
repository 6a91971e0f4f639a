"""One client connection: the protocol's commands, its subscriptions and a bounded send
buffer. Transport-agnostic (the WebSocket and SSE endpoints feed it frames and drain it).

Guarantees:

* The first command must be ``connect`` (anything else closes with 3501); a failed connect
  is answered with its error (109 for an expired token, so the SDK refreshes it) and the
  connection then accepts nothing but close.
* Replies and pushes leave in the order they were made: a subscribe reply always precedes
  the channel's publications.
* The send buffer is bounded (``LOCKSTEP_REALTIME_CLIENT_QUEUE_BYTES``): a client that does
  not read is closed with 3008 and its buffer freed, never allowed to grow memory.
* A subscription that fell behind the channel's stream is ended with an unsubscribe push of
  code 2500, which makes the SDK subscribe again and recover (a server-side subscription,
  which the client cannot resubscribe, closes the connection with 3010 instead).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lockstep.realtime import protocol as p
from lockstep.realtime.channels import ConnectRequest, Credentials
from lockstep.realtime.hub import Subscriber
from lockstep.realtime.recovery import recover

if TYPE_CHECKING:
    from lockstep.realtime.server import Realtime


class Connection:
    """One connected client (see the module doc)."""

    __slots__ = (
        "_queue",
        "_size",
        "_waiter",
        "closed",
        "credentials",
        "expires_at",
        "failed",
        "headers",
        "id",
        "limit",
        "on_close",
        "ping_sent",
        "server",
        "subscriptions",
        "transport",
        "uni",
        "user",
        "write",
        "writing",
    )

    def __init__(
        self, server: Realtime, *, transport: str, uni: bool, headers: dict[str, str]
    ) -> None:
        self.server = server
        self.transport = transport
        self.uni = uni
        self.headers = headers
        self.id = str(uuid.uuid4())
        self.user = ""
        self.credentials: Credentials | None = None
        self.expires_at: float | None = None
        self.subscriptions: dict[str, Subscriber] = {}
        self.closed: p.Disconnect | None = None
        self.failed = False
        self.ping_sent = 0.0  # monotonic time of a ping not yet answered (bidirectional)
        self.on_close: Callable[[p.Disconnect], None] | None = None
        # The WebSocket endpoint's writer: ``write(frame)`` sends a frame at once when
        # nothing is queued; ``writing`` while a send waits on the client (frames then queue
        # here, bounded, and the writer takes them when the send is done). So an idle
        # connection holds no task, and a frame to a client that reads needs none either.
        self.write: Callable[[str], None] | None = None
        self.writing = False
        # A list and a future made only while someone waits: with the above, an idle
        # connection holds ~5 KB less than with a deque, an Event and a resident writer
        # (bench/realtime.py measures memory per idle connection).
        self._queue: list[str] = []
        self.limit = server.settings.realtime_client_queue_bytes
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None

    # -- outgoing ----------------------------------------------------------------------------

    def send(self, frame: str) -> bool:
        """Send or queue ``frame``; closes the connection with 3008 when its buffer would
        overflow."""
        if self.closed is not None:
            return False
        if self.write is not None and not self.writing:
            self.write(frame)  # nothing queued: straight to the socket
            return True
        self._size += len(frame)
        if self._size > self.limit:
            self.slow()
            return False
        self._queue.append(frame)
        self._wake()
        return True

    def send_all(self, frames: list[str]) -> bool:
        """:meth:`send` for several frames at once (on a WebSocket: one frame)."""
        if self.write is not None:
            return self.send("\n".join(frames))
        if self.closed is not None:
            return False
        for frame in frames:
            self._size += len(frame)
        if self._size > self.limit:
            self.slow()
            return False
        self._queue.extend(frames)
        self._wake()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def push(self, publications: list[p.Publication]) -> int:
        """Queue the push frames of ``publications`` (of one channel, in order); how many."""
        uni = self.uni
        if len(publications) == 1:
            return 1 if self.send(publications[0].frame(uni=uni)) else 0
        frames = [publication.frame(uni=uni) for publication in publications]
        return len(frames) if self.send_all(frames) else 0

    def slow(self) -> None:
        self.server.metrics.dropped.inc()
        self.close(p.SLOW)

    def take(self) -> list[str]:
        """The frames queued so far (none: the writer is done for now)."""
        frames, self._queue = self._queue, []
        self._size = 0
        return frames

    async def outgoing(self) -> list[str] | None:
        """The frames queued so far (waiting for one); None once the connection is closed."""
        while not self._queue:
            if self.closed is not None:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frames, self._queue = self._queue, []
        self._size = 0
        return frames

    def close(self, disconnect: p.Disconnect) -> None:
        """Close with ``disconnect`` (idempotent): subscriptions end, the buffer is freed."""
        if self.closed is not None:
            return
        self.closed = disconnect
        self._queue = []
        self._size = 0
        self._wake()
        for channel in list(self.subscriptions):
            self.server.hub.remove(channel, self)
        self.subscriptions.clear()
        self.server.forget(self)
        if disconnect.code >= 3000:
            self.server.metrics.disconnects.labels(str(disconnect.code)).inc()
        if self.on_close is not None:
            self.on_close(disconnect)

    def resubscribe(self, channel: str) -> None:
        """The subscription fell behind: make the client subscribe again and recover."""
        subscriber = self.subscriptions.pop(channel, None)
        if subscriber is None:
            return
        self.server.hub.remove(channel, self)
        self.server.metrics.dropped.inc()
        if subscriber.server_side:
            self.close(p.INSUFFICIENT_STATE)
            return
        code, reason = p.UNSUBSCRIBE_INSUFFICIENT
        push = {"channel": channel, "unsubscribe": {"code": code, "reason": reason}}
        self.send(p.encode_push(push, uni=self.uni))

    # -- incoming ----------------------------------------------------------------------------

    async def handle_frame(self, frame: str | bytes) -> None:
        """Run the commands of one client frame, in order."""
        if len(frame) > self.server.settings.realtime_max_frame_bytes:
            self.close(p.BAD_REQUEST)
            return
        try:
            commands = p.decode_frame(frame)
        except p.BadFrame:
            self.close(p.BAD_REQUEST)
            return
        for command in commands:
            if self.closed is not None:
                return
            await self.handle(command)

    async def handle(self, command: p.Command) -> None:
        if command.method is None:  # a pong (an empty command)
            self.ping_sent = 0.0
            return
        if command.method == "send":
            return  # asynchronous messages are not used: nothing to answer
        if self.credentials is None and (command.method != "connect" or self.failed):
            self.close(p.BAD_REQUEST)
            return
        handler = getattr(self, "_" + command.method, None) if command.method != "?" else None
        try:
            if handler is None:
                raise p.METHOD_NOT_FOUND
            result = await handler(command.params)
        except Exception as exc:
            if command.method == "connect":
                self.failed = True
            self.send(p.encode_error(command.id, p.reply_error(exc)))
            return
        if isinstance(result, _Reply):
            self.send(p.encode_reply(command.id, command.method, result.body))
            result.finish(self)
        else:
            self.send(p.encode_reply(command.id, command.method, result))

    async def connect_unidirectional(self, params: dict[str, Any]) -> None:
        """Connect a unidirectional client (its connect request came with the HTTP request):
        a ``connect`` push, or a ``disconnect`` push and close when it is refused."""
        try:
            reply = await self._connect(params)
        except Exception as exc:
            error = p.reply_error(exc)
            disconnect = p.UNIDIRECTIONAL_DISCONNECT.get(error.code, p.SERVER_ERROR)
            self.send(p.encode_push({"disconnect": disconnect.to_json()}, uni=True))
            self.close(disconnect)
            return
        self.send(p.encode_push({"connect": reply.body}, uni=True))
        reply.finish(self)

    async def _connect(self, params: dict[str, Any]) -> _Reply:
        if self.credentials is not None:
            raise p.BAD_REQUEST_ERROR
        credentials = await self._authenticate(params)
        self.credentials = credentials
        self.user = credentials.user
        # A refresh needs at most the Authorization header: the rest is not kept per client.
        auth = self.headers.get("authorization")
        self.headers = {"authorization": auth} if auth else {}
        self.server.register(self)
        result: dict[str, Any] = {
            "client": self.id,
            "version": self.server.version,
            "ping": _seconds(self.server.settings.realtime_ping_seconds),
        }
        if not self.uni:
            result["pong"] = True
        result.update(self._expiry())
        raw = params.get("subs")
        requested: dict[str, Any] = raw if isinstance(raw, dict) else {}
        channels = list(credentials.channels)
        if self.uni:  # a unidirectional client names its channels in its connect request
            channels += [c for c in requested if c not in channels]
        subs: dict[str, Any] = {}
        started = []
        for channel in channels:
            wanted = requested.get(channel)
            try:
                done = await self.subscribe(
                    channel,
                    wanted if isinstance(wanted, dict) else {},
                    server_side=channel in credentials.channels,
                )
            except p.ReplyError:
                continue  # a channel it may not have is left out
            except Exception as exc:
                if p.reply_error(exc) is p.INTERNAL:
                    raise
                continue
            subs[channel] = done.body
            started.extend(done.started)
        if subs:
            result["subs"] = subs
        return _Reply(result, started)

    async def _authenticate(self, params: dict[str, Any]) -> Credentials:
        token = params.get("token") or ""
        if not token:
            header = self.headers.get("authorization", "")
            scheme, _, value = header.partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else ""
        request = ConnectRequest(str(token), params.get("data"), self.headers, self.transport)
        return await self.server.authenticate(request)

    def _expiry(self) -> dict[str, Any]:
        expires_at = self.credentials.expires_at if self.credentials else None
        self.expires_at = expires_at
        if expires_at is None:
            return {}
        return {"expires": True, "ttl": max(1, int(expires_at - time.time()))}

    async def _refresh(self, params: dict[str, Any]) -> dict[str, Any]:
        credentials = await self._authenticate(params)
        if credentials.user != self.user:
            self.close(p.INVALID_TOKEN)
            raise p.UNAUTHORIZED
        self.credentials = credentials
        return {"client": self.id, "version": self.server.version, **self._expiry()}

    async def _subscribe(self, params: dict[str, Any]) -> _Reply:
        channel = params.get("channel")
        if not isinstance(channel, str) or not channel:
            raise p.BAD_REQUEST_ERROR
        return await self.subscribe(channel, params, server_side=False)

    async def subscribe(self, channel: str, params: dict[str, Any], *, server_side: bool) -> _Reply:
        """Authorize and start a subscription; the caller sends ``body`` then ``finish``."""
        namespace = self.server.channels.find(channel)
        if namespace is None:
            raise p.UNKNOWN_CHANNEL
        if channel in self.subscriptions:
            raise p.ALREADY_SUBSCRIBED
        if len(self.subscriptions) >= self.server.settings.realtime_channel_limit:
            raise p.LIMIT_EXCEEDED
        if not server_side:
            if namespace.authorize is None:
                raise p.PERMISSION_DENIED
            assert self.credentials is not None
            await namespace.authorize(self.credentials, channel)
            if self.closed is not None:
                raise p.INTERNAL
        subscriber = Subscriber(self, server_side=server_side)
        self.subscriptions[channel] = subscriber
        self.server.hub.add(channel, subscriber)
        try:
            if not namespace.history:
                return _Reply({}, [(channel, subscriber, 0)])
            return await self._position(channel, params, subscriber)
        except BaseException:
            self.subscriptions.pop(channel, None)
            self.server.hub.remove(channel, self)
            raise

    async def _position(
        self, channel: str, params: dict[str, Any], subscriber: Subscriber
    ) -> _Reply:
        wants = bool(params.get("recover"))
        offset = _int(params.get("offset"))
        epoch = str(params.get("epoch") or "")
        current, top, history = await self.server.stream(channel, offset if wants else None)
        body: dict[str, Any] = {"recoverable": True, "positioned": True, "epoch": current}
        if not wants:
            body["offset"] = top
            return _Reply(body, [(channel, subscriber, top)])
        outcome = recover(offset, epoch, top, current, history)
        if not outcome.recovered and _int(params.get("flag")) & p.SUBSCRIBE_REJECT_UNRECOVERED:
            raise p.UNRECOVERABLE_POSITION
        body.update(offset=outcome.offset, was_recovering=True, recovered=outcome.recovered)
        if outcome.publications:
            body["publications"] = [pub.to_json() for pub in outcome.publications]
        return _Reply(body, [(channel, subscriber, top)])

    async def _unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if isinstance(channel, str) and self.subscriptions.pop(channel, None) is not None:
            self.server.hub.remove(channel, self)
        return {}

    async def _presence_stats(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._subscribed_channel(params)
        clients, users = await self.server.presence_stats(channel)
        return {"num_clients": clients, "num_users": users}

    async def _presence(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._subscribed_channel(params)
        namespace = self.server.channels.find(channel)
        if namespace is None or not namespace.presence:
            raise p.NOT_AVAILABLE
        clients = await self.server.presence(channel)
        return {"presence": {c: {"client": c, "user": u} for c, u in clients.items()}}

    async def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._subscribed_channel(params)
        namespace = self.server.channels.find(channel)
        if namespace is None or not namespace.history:
            raise p.NOT_AVAILABLE
        return await self.server.history(channel, params)

    async def _ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def _publish(self, params: dict[str, Any]) -> dict[str, Any]:
        raise p.PERMISSION_DENIED  # clients never publish: writes go through the API

    async def _rpc(self, params: dict[str, Any]) -> dict[str, Any]:
        raise p.NOT_AVAILABLE

    async def _sub_refresh(self, params: dict[str, Any]) -> dict[str, Any]:
        raise p.NOT_AVAILABLE  # no subscription tokens: subscribe hooks authorize instead

    def _subscribed_channel(self, params: dict[str, Any]) -> str:
        channel = params.get("channel")
        if not isinstance(channel, str) or channel not in self.subscriptions:
            raise p.PERMISSION_DENIED
        return channel


class _Reply:
    """A reply that starts subscriptions: once it is queued, each ``(channel, subscriber,
    position)`` replays what it buffered (so nothing overtakes the reply)."""

    __slots__ = ("body", "started")

    def __init__(self, body: dict[str, Any], started: list[tuple[str, Subscriber, int]]) -> None:
        self.body = body
        self.started = started

    def finish(self, connection: Connection) -> None:
        for channel, subscriber, position in self.started:
            if connection.subscriptions.get(channel) is subscriber:
                connection.server.hub.subscribed(channel, subscriber, position)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _seconds(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
