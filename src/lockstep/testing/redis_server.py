"""A throwaway Redis for tests, started from the installed ``redis-server``."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import redis

from lockstep.testing._process import ServerProcess, find_executable


class RedisServer(ServerProcess):
    """A Redis with automatic persistence off (``--save ''``, ``--appendonly no``) on a free
    port.

    ``bindir`` restricts the search for ``redis-server`` to that directory; otherwise it is
    looked up on ``PATH``. The constructor raises :class:`ServerNotAvailable` when it is
    missing; :meth:`start` raises :class:`ServerStartError` when it does not come up. A
    stopped or killed Redis comes back on the same port *empty*, or, after
    :meth:`snapshot`, with the data of that snapshot (as a Redis restored from an older RDB
    file would). ``base_dir`` as for :class:`~lockstep.testing.PostgresServer`.
    """

    name = "redis"
    stop_signal = signal.SIGTERM

    def __init__(
        self,
        *,
        bindir: str | Path | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
        base_dir: str | Path | None = None,
    ) -> None:
        self.executable = find_executable("redis-server", bindir, apt_package="redis-server")
        super().__init__(port=port, startup_timeout=startup_timeout, base_dir=base_dir)

    def url(self, db: int = 0) -> str:
        """``redis://`` URL of logical database ``db``."""
        return f"redis://{self.host}:{self.port}/{db}"

    def flushall(self) -> None:
        """Delete every key in every logical database (raises redis-py's error if down)."""
        with self._client() as client:
            client.flushall()

    def snapshot(self) -> None:
        """Write the dataset to ``dump.rdb`` in :attr:`directory` now (``SAVE``). The next
        :meth:`start` after :meth:`stop` or :meth:`kill` loads it, whatever was written
        since: a restart from an older snapshot."""
        with self._client() as client:
            client.save()

    def config_set(self, name: str, value: str | int) -> None:
        """``CONFIG SET name value`` (e.g. ``maxmemory``, ``maxmemory-policy``); lasts until
        the server stops."""
        with self._client() as client:
            client.config_set(name, value)

    def _client(self) -> redis.Redis:
        return redis.Redis(
            host=self.host, port=self.port, socket_timeout=5, socket_connect_timeout=1
        )

    def _command(self) -> list[str]:
        return [
            *(str(self.executable), "--port", str(self.port), "--bind", self.host),
            *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
        ]

    def _is_ready(self, pid: int) -> bool:
        # INFO over a raw socket: no client retries, and process_id proves the answer comes
        # from our server, not from another one that took the port.
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"INFO server\r\n")
                reply = b""
                while not _complete_bulk_string(reply):
                    chunk = sock.recv(65536)
                    if not chunk:
                        return False
                    reply += chunk
        except OSError:  # refused, reset, timed out: not (yet) our server
            return False
        match = re.search(rb"\r\nprocess_id:(\d+)\r\n", reply)
        return match is not None and int(match.group(1)) == pid


def _complete_bulk_string(reply: bytes) -> bool:
    """Whether ``reply`` holds a whole RESP reply of the kind INFO sends (or any error)."""
    header, separator, body = reply.partition(b"\r\n")
    if not separator:
        return False
    if not header.startswith(b"$"):
        return True  # an error (-LOADING ...) or something else: complete, and not ready
    return len(body) >= int(header[1:]) + 2
