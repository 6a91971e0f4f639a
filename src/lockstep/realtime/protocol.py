"""The Centrifugo client protocol, JSON flavour: frames in, replies and pushes out.

Pure and I/O free. What it guarantees, as the official SDKs (centrifuge-js 5.x,
centrifuge-python) need it:

* A frame holds one or more JSON objects separated by ``\\n``, both ways; :func:`decode_frame`
  splits and parses them and raises :class:`BadFrame` for anything that is not a list of
  JSON objects (the connection is then closed with :data:`BAD_REQUEST`).
* A command is ``{"id": N, "<method>": {...}}``; unknown fields are ignored, an unknown
  method is answered with error 104, a command without id other than ``send`` is a pong.
* Replies carry the command's id and the method's key (``{"id":1,"subscribe":{...}}``) or an
  ``error``; pushes are ``{"push":{"channel":...,"pub":{...}}}`` on bidirectional transports
  and the bare push object on unidirectional ones. ``{}`` is a ping.
* Publication data is raw JSON spliced into the frame, so a publication is encoded once
  for every subscriber (:class:`Publication` caches both frame shapes).

Error and close codes are the protocol's own (see docs/realtime.md for the table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from lockstep.exceptions import (
    AuthenticationError,
    LockstepError,
    NotFoundError,
    PermissionDeniedError,
    TokenExpiredError,
)

log = structlog.get_logger("lockstep.realtime")

METHODS = frozenset(
    {
        "connect",
        "subscribe",
        "unsubscribe",
        "publish",
        "presence",
        "presence_stats",
        "history",
        "ping",
        "send",
        "rpc",
        "refresh",
        "sub_refresh",
    }
)


@dataclass(frozen=True, slots=True)
class ReplyError(Exception):
    """An error answered to one command (the connection stays open)."""

    code: int
    message: str
    temporary: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.temporary:
            body["temporary"] = True
        return body


INTERNAL = ReplyError(100, "internal server error", temporary=True)
UNAUTHORIZED = ReplyError(101, "unauthorized")
UNKNOWN_CHANNEL = ReplyError(102, "unknown channel")
PERMISSION_DENIED = ReplyError(103, "permission denied")
METHOD_NOT_FOUND = ReplyError(104, "method not found")
ALREADY_SUBSCRIBED = ReplyError(105, "already subscribed")
LIMIT_EXCEEDED = ReplyError(106, "limit exceeded")
BAD_REQUEST_ERROR = ReplyError(107, "bad request")
NOT_AVAILABLE = ReplyError(108, "not available")
TOKEN_EXPIRED = ReplyError(109, "token expired")
UNRECOVERABLE_POSITION = ReplyError(112, "unrecoverable position")


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Why a connection is closed: codes 3000-3499 make the SDKs reconnect, 3500-3999 not."""

    code: int
    reason: str

    @property
    def reconnect(self) -> bool:
        return self.code < 3500 or 4000 <= self.code < 4500

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "reason": self.reason, "reconnect": self.reconnect}


SHUTDOWN = Disconnect(3001, "shutdown")
SERVER_ERROR = Disconnect(3004, "internal server error")
EXPIRED = Disconnect(3005, "connection expired")
SLOW = Disconnect(3008, "slow")
WRITE_ERROR = Disconnect(3009, "write error")
INSUFFICIENT_STATE = Disconnect(3010, "insufficient state")
NO_PONG = Disconnect(3012, "no pong")
INVALID_TOKEN = Disconnect(3500, "invalid token")
BAD_REQUEST = Disconnect(3501, "bad request")
PERMISSION_DENIED_CLOSE = Disconnect(3507, "permission denied")

UNIDIRECTIONAL_DISCONNECT = {
    TOKEN_EXPIRED.code: EXPIRED,
    UNAUTHORIZED.code: INVALID_TOKEN,
    PERMISSION_DENIED.code: PERMISSION_DENIED_CLOSE,
}
"""A unidirectional client cannot be answered an error: its connect is refused with these."""

UNSUBSCRIBE_INSUFFICIENT = (2500, "insufficient state")
"""An unsubscribe push with a code >= 2500 makes the SDK subscribe again (recovering)."""

SUBSCRIBE_REJECT_UNRECOVERED = 2
"""Bit of ``subscribe.flag``: answer 112 instead of ``recovered: false``."""


def reply_error(exc: BaseException) -> ReplyError:
    """The protocol error for an exception an application hook raised: 109 for an expired
    token (the SDKs refresh it), 101 refused, 103 forbidden or not found (never telling
    which), 100 (temporary) for anything else."""
    if isinstance(exc, ReplyError):
        return exc
    if isinstance(exc, TokenExpiredError):
        return TOKEN_EXPIRED
    if isinstance(exc, AuthenticationError):
        return UNAUTHORIZED
    if isinstance(exc, PermissionDeniedError | NotFoundError):
        return PERMISSION_DENIED
    if not isinstance(exc, LockstepError):
        log.error("realtime_hook_failed", error=repr(exc))
    return INTERNAL


class BadFrame(Exception):
    """A client frame that is not newline-separated JSON objects."""


@dataclass(frozen=True, slots=True)
class Command:
    """One client command: ``id`` 0 for ``send`` and pongs, ``method`` None for a pong."""

    id: int
    method: str | None
    params: dict[str, Any]


def decode_frame(frame: str | bytes) -> list[Command]:
    """The commands of one client frame; raises :class:`BadFrame`."""
    if isinstance(frame, str):
        frame = frame.encode()
    commands = []
    for line in frame.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadFrame(f"not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise BadFrame("a command must be a JSON object")
        commands.append(parse_command(obj))
    return commands


def parse_command(obj: dict[str, Any]) -> Command:
    """A command from its JSON object: the first known method key wins, unknown keys are
    ignored; ``method`` is ``"?"`` for a command with an id but no known method."""
    raw_id = obj.get("id", 0)
    if not isinstance(raw_id, int) or isinstance(raw_id, bool) or raw_id < 0:
        raise BadFrame("command id must be a non-negative integer")
    for key, value in obj.items():
        if key in METHODS:
            params = value if isinstance(value, dict) else {}
            return Command(raw_id, key, params)
    return Command(raw_id, "?" if raw_id else None, {})


def encode_reply(command_id: int, method: str, result: dict[str, Any]) -> str:
    return orjson.dumps({"id": command_id, method: result}).decode()


def encode_error(command_id: int, error: ReplyError) -> str:
    return orjson.dumps({"id": command_id, "error": error.to_json()}).decode()


def encode_push(push: dict[str, Any], *, uni: bool) -> str:
    """A push frame: wrapped in ``{"push": ...}`` unless the transport is unidirectional."""
    return orjson.dumps(push if uni else {"push": push}).decode()


PING = "{}"


@dataclass(slots=True)
class Publication:
    """A publication in a channel: ``data`` is JSON bytes; ``offset`` 0 when the channel
    keeps no history. ``committed_at`` (``time.time()``) feeds the commit-to-send metric."""

    channel: str
    data: bytes
    offset: int = 0
    epoch: str = ""
    committed_at: float = 0.0
    _frames: dict[bool, str] = field(default_factory=dict, repr=False, compare=False)

    def body(self) -> bytes:
        """The ``pub`` object itself (for subscribe and history results)."""
        if self.offset:
            return b'{"data":' + self.data + b',"offset":' + str(self.offset).encode() + b"}"
        return b'{"data":' + self.data + b"}"

    def frame(self, *, uni: bool) -> str:
        """The push frame (text, as WebSocket text frames carry it), encoded once per shape."""
        found = self._frames.get(uni)
        if found is None:
            inner = b'{"channel":' + orjson.dumps(self.channel) + b',"pub":' + self.body() + b"}"
            found = (inner if uni else b'{"push":' + inner + b"}").decode()
            self._frames[uni] = found
        return found

    def to_json(self) -> Any:
        """The ``pub`` object as a JSON value (for results built with orjson)."""
        return orjson.Fragment(self.body())
