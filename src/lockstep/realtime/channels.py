"""Channels, their namespaces, and the application's hooks that authorize connections and
subscriptions.

A channel name is ``<namespace>:<rest>`` (``case:7``, ``user:42``, ``queue:adjudication``);
its namespace says whether it keeps history (durable, recoverable) and who may subscribe.
The application supplies:

* ``authenticate(request) -> Credentials``: every connect and every token refresh. It gets
  the token the SDK put in its connect command (never a URL) and raises
  :class:`~lockstep.TokenExpiredError` (the client refreshes: error 109) or
  :class:`~lockstep.AuthenticationError` (refused: error 101).
* ``Namespace.authorize(credentials, channel)``: every subscribe. Raise
  :class:`~lockstep.PermissionDeniedError` or :class:`~lockstep.NotFoundError` to refuse
  (error 103); return normally to allow. A namespace without ``authorize`` refuses everyone
  but the server-side subscriptions ``authenticate`` returns.
"""

from __future__ import annotations

import re
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lockstep.exceptions import ConfigurationError

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
MAX_CHANNEL_LENGTH = 255


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """What a client presents when it connects or refreshes: the ``token`` from its connect
    command, the optional ``data``, ``headers`` of the HTTP request that opened the
    connection (lower-case names) and the transport's name."""

    token: str
    data: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    transport: str = "websocket"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who is connected: ``user`` (a string id, "" for anonymous), ``expires_at`` (unix
    seconds; the SDK refreshes before it, and a connection not refreshed by then is closed),
    ``channels`` to subscribe on the server's side at connect, and ``state`` for the hooks
    (casebook keeps its ``Principal`` there)."""

    user: str
    expires_at: float | None = None
    channels: Sequence[str] = ()
    state: Any = None


Authenticate = Callable[[ConnectRequest], Awaitable[Credentials]]
Authorize = Callable[[Credentials, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Namespace:
    """Channels named ``<name>:...``.

    ``history``: publications get offsets and are kept in the database (taken in the
    writing transaction: gap-free, in commit order, across processes, across restarts), so
    clients recover what they missed. Without it a channel is volatile: publications are
    only delivered live (job progress, typing indicators). ``presence``: the ``presence``
    command lists the channel's clients (``presence_stats`` works on every channel).
    """

    name: str
    authorize: Authorize | None = None
    history: bool = True
    presence: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigurationError(
                f"namespace {self.name!r}: use letters, digits, '_', '-' and '.' only"
            )


def namespace_of(channel: str) -> str:
    """``case:7`` -> ``case``; a channel without ``:`` is in the namespace ``""``."""
    head, sep, _ = channel.partition(":")
    return head if sep else ""


class Channels:
    """The namespaces of an application, by name."""

    def __init__(self, namespaces: Iterable[Namespace]) -> None:
        self._by_name: dict[str, Namespace] = {}
        for ns in namespaces:
            if ns.name in self._by_name:
                raise ConfigurationError(f"namespace {ns.name!r} is declared twice")
            self._by_name[ns.name] = ns

    def find(self, channel: str) -> Namespace | None:
        """The namespace of ``channel``, or None for a malformed or undeclared one."""
        if not channel or len(channel) > MAX_CHANNEL_LENGTH or "\n" in channel:
            return None
        return self._by_name.get(namespace_of(channel))

    def require(self, channel: str) -> Namespace:
        """The namespace of ``channel``; ConfigurationError naming the declared ones."""
        found = self.find(channel)
        if found is None:
            raise ConfigurationError(
                f"cannot publish to {channel!r}: its namespace {namespace_of(channel)!r} is "
                f"not declared (declared: {sorted(self._by_name)}); add Namespace(...)"
            )
        return found


def template_fields(template: str) -> tuple[str, ...]:
    """The column names a channel template such as ``"case:{case_id}"`` uses."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    if not names:
        raise ConfigurationError(f"channel template {template!r} names no column")
    return tuple(dict.fromkeys(names))
