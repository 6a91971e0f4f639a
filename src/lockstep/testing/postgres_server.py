"""A throwaway PostgreSQL cluster for tests, built with the installed ``initdb``/``postgres``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from lockstep.testing._process import (
    LOG_TAIL_CHARS,
    ServerNotAvailable,
    ServerProcess,
    ServerStartError,
    clean_env,
    is_executable,
)

_BINARIES = ("initdb", "postgres")
_APT_HINT = "Install them with `apt-get install postgresql`"


class PostgresServer(ServerProcess):
    """A PostgreSQL cluster in a temp dir, run in the foreground on a free port.

    * Superuser ``postgres``, ``trust`` authentication, UTF-8 with the C locale.
    * ``fsync`` and ``full_page_writes`` are off: every committed transaction survives
      :meth:`stop` or :meth:`kill` + :meth:`start` of the server, but not a machine crash.
    * Run as the ``postgres`` OS user when the current process is root (PostgreSQL refuses to
      run as root).

    ``bindir`` restricts the search for ``initdb`` and ``postgres`` to that
    directory (see :func:`find_postgres_bindir`). ``server_settings`` are passed as
    ``-c key=value``. The temp dir is made in ``base_dir`` (default ``/dev/shm`` when it has
    1 GiB free, else the system temp dir: on disk, ``CREATE DATABASE`` is many times slower).

    The constructor raises :class:`ServerNotAvailable` when the binaries are missing;
    :meth:`start` raises :class:`ServerStartError` when the server does not come up.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, disconnect
    superuser = "postgres"

    def __init__(
        self,
        *,
        bindir: str | Path | None = None,
        port: int | None = None,
        server_settings: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        base_dir: str | Path | None = None,
    ) -> None:
        self.bindir = find_postgres_bindir(bindir)
        self.server_settings = dict(server_settings or {})
        self._os_user = _postgres_os_user() if os.geteuid() == 0 else None
        super().__init__(port=port, startup_timeout=startup_timeout, base_dir=base_dir)
        self._admin = _AdminConnection(timeout=startup_timeout)

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of database ``dbname`` (asyncpg driver, user ``postgres``)."""
        return f"postgresql+asyncpg://{self.superuser}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """``postgresql://`` DSN of database ``dbname``, for asyncpg or ``psql``."""
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` as a copy of ``template`` (default ``template1``); its URL.

        The template must have no open connections while it is copied (PostgreSQL's rule).
        Blocks the calling thread (a few milliseconds), also inside a running event loop.
        Raises asyncpg's ``DuplicateDatabaseError`` if ``name`` exists.
        """
        statement = f"CREATE DATABASE {_quote_ident(name)}"
        if template is not None:
            statement += f" TEMPLATE {_quote_ident(template)}"
        self.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting whoever is still connected."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def execute(self, *statements: str, dbname: str = "postgres") -> None:
        """Run ``statements`` in order as the superuser in ``dbname``, each in autocommit.

        Raises the first statement's asyncpg error; the later ones do not run.
        """
        if dbname == "postgres":
            self._admin.execute(self.dsn(), statements)
        else:
            self._admin.execute_once(self.dsn(dbname), statements)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._admin.close()

    # -- ServerProcess hooks -----------------------------------------------------------------

    def _run_as(self) -> dict[str, Any]:
        if self._os_user is None:
            return {}
        # All three, or the files end up group root.
        return {"user": self._os_user.pw_uid, "group": self._os_user.pw_gid, "extra_groups": []}

    def _prepare(self) -> None:
        directory = self.directory
        (directory / "socket").mkdir()
        if self._os_user is not None:
            for path in (directory, directory / "socket"):
                os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)
        log_path = directory / "initdb.log"
        with log_path.open("wb") as log:
            result = subprocess.run(  # noqa: S603 - argv of a located binary
                [
                    *(str(self.bindir / "initdb"), "--pgdata", str(directory / "data")),
                    *("--auth", "trust", "--username", self.superuser),
                    *("--encoding", "UTF8", "--locale", "C", "--no-sync"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
                env=clean_env(),
                check=False,
                **self._run_as(),
            )
        if result.returncode != 0:
            output = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            raise ServerStartError(f"initdb failed with code {result.returncode}:\n{output}")

    def _command(self) -> list[str]:
        # synchronous_commit stays on: with fsync off it costs microseconds, and it is what
        # lets a commit survive kill() (fault tests rely on that, as on a real server).
        settings = {"fsync": "off", "full_page_writes": "off", **self.server_settings}
        command = [
            *(str(self.bindir / "postgres"), "-D", str(self.directory / "data")),
            *("-h", self.host, "-p", str(self.port)),
            *("-k", str(self.directory / "socket"), "-F"),
        ]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        return command

    def _is_ready(self, pid: int) -> bool:
        # What pg_ctl -w reads: our postmaster (pid on line 1) writes "ready" on line 8 once
        # it accepts connections. Unlike a probe on the port, it cannot be fooled by another
        # server that took the port.
        try:
            lines = (self.directory / "data" / "postmaster.pid").read_text().splitlines()
        except OSError:  # not written yet
            return False
        return len(lines) >= 8 and lines[0] == str(pid) and lines[7].strip() == "ready"

    def _on_stop(self) -> None:
        self._admin.disconnect()


def find_postgres_bindir(bindir: str | Path | None = None) -> Path:
    """The directory holding ``initdb`` and ``postgres``.

    Searched in order: ``PATH``, ``pg_config --bindir``, the newest
    ``/usr/lib/postgresql/*/bin`` (Debian's layout). With ``bindir``, only that directory.
    Raises :class:`ServerNotAvailable` naming the apt package when none has both.
    """
    candidates: list[Path] = []
    if bindir is not None:
        candidates.append(Path(bindir))
    else:
        on_path = shutil.which("initdb")
        if on_path is not None:
            candidates.append(Path(on_path).resolve().parent)
        pg_config = shutil.which("pg_config")
        if pg_config is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):  # then look further
                output = subprocess.run(  # noqa: S603 - pg_config found on PATH
                    [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
                ).stdout.strip()
                if output:
                    candidates.append(Path(output))
        debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key)
        candidates += reversed(debian)
    for candidate in candidates:
        if all(is_executable(candidate / binary) for binary in _BINARIES):
            return candidate
    searched = ", ".join(str(c) for c in candidates) if candidates else "PATH"
    raise ServerNotAvailable(
        f"PostgreSQL server binaries ({', '.join(_BINARIES)}) not found "
        f"(searched {searched}). {_APT_HINT}."
    )


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def _postgres_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ServerNotAvailable(
            "PostgreSQL refuses to run as root and there is no 'postgres' OS user to run it "
            f"as. {_APT_HINT} (it creates the user), or run the tests as another user."
        ) from None


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _AdminConnection:
    """One superuser connection to the ``postgres`` database, driven from a private loop thread.

    Reusing one connection keeps CREATE/DROP DATABASE at a few milliseconds (a new backend
    first loads its catalog caches). It is dropped whenever the server stops and reopened on
    the next statement. Callable from any thread, inside a running event loop or not.
    """

    def __init__(self, *, timeout: float) -> None:
        self._timeout = timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connection: Any = None

    def execute(self, dsn: str, statements: Sequence[str]) -> None:
        """Run ``statements`` on the kept connection to ``dsn`` (opened on first use)."""
        self._call(lambda: self._execute(dsn, statements))

    def execute_once(self, dsn: str, statements: Sequence[str]) -> None:
        """Run ``statements`` on a connection to ``dsn`` opened and closed for them."""
        self._call(lambda: self._execute_once(dsn, statements))

    def disconnect(self) -> None:
        """Drop the kept connection (the server went away)."""
        if self._loop is not None:
            self._call(self._disconnect)

    def close(self) -> None:
        """Drop the connection and end the loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._disconnect(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _call(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="lockstep-postgres-admin", daemon=True
                )
                self._thread.start()
            loop = self._loop
        asyncio.run_coroutine_threadsafe(make(), loop).result()

    async def _execute(self, dsn: str, statements: Sequence[str]) -> None:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(dsn, timeout=self._timeout)
        for statement in statements:
            await self._connection.execute(statement)

    async def _execute_once(self, dsn: str, statements: Sequence[str]) -> None:
        connection = await asyncpg.connect(dsn, timeout=self._timeout)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()
