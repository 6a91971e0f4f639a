"""The life cycle shared by the throwaway servers: temp dir, free port, process group.

A server is one foreground process started in its own process group (so a crash-like
:meth:`ServerProcess.kill` takes its children too) with stdout and stderr in a log file whose
tail ends up in every start-up error.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"
POLL_INTERVAL = 0.02  # seconds between readiness probes
STOP_TIMEOUT = 30.0
LOG_TAIL_CHARS = 3000
_SHM = Path("/dev/shm")  # noqa: S108 - deliberately tmpfs, see default_base_dir()
_SHM_MIN_FREE = 1 << 30
_OWNER_FILE = "owner.pid"  # the process that started the server (a test run)
_SERVER_PID_FILE = "server.pid"


class ServerNotAvailable(Exception):
    """The server binaries are not installed; the message says which apt package to install."""


class ServerStartError(RuntimeError):
    """The binaries exist but the server did not come up; the message includes its log tail."""


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it).

    Another process may take it before you bind it; the servers retry with a new port when
    their first start loses that race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """Start, stop, kill and restart one server process on a fixed ``127.0.0.1`` port.

    Subclasses provide :meth:`_command` and :meth:`_is_ready`, and may override
    :meth:`_prepare` (first start only), :meth:`_run_as` and :meth:`_on_stop`.
    """

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(
        self, *, port: int | None, startup_timeout: float, base_dir: str | Path | None
    ) -> None:
        self.base_dir = Path(base_dir) if base_dir is not None else default_base_dir()
        self.startup_timeout = startup_timeout
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        """The TCP port; the same across :meth:`stop`/:meth:`start` once the server has run."""
        return self._port

    @property
    def directory(self) -> Path:
        """The temporary directory holding the server's files (exists from :meth:`start`)."""
        if self._dir is None:
            raise RuntimeError(f"{self.name} server has not been started")
        return self._dir

    @property
    def log_path(self) -> Path:
        """The file the server's stdout and stderr go to."""
        return self.directory / "server.log"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it accepts connections (no-op if running).

        Raises :class:`ServerStartError` if it exits, or is not ready within
        ``startup_timeout`` seconds.
        """
        if self.is_running:
            return
        if self._dir is None:
            _remove_orphans(self.base_dir, prefix=f"lockstep-{self.name}-")
            self._dir = Path(tempfile.mkdtemp(prefix=f"lockstep-{self.name}-", dir=self.base_dir))
            try:
                (self._dir / _OWNER_FILE).write_text(str(os.getpid()))
                self._prepare()
            except BaseException:
                shutil.rmtree(self._dir)
                self._dir = None
                raise
        # Only the first start on a port we picked may move to another one: once clients know
        # the port, a restart must come back on it.
        attempts = 1 if (self._fixed_port or self._started_once) else 5
        for attempt in range(1, attempts + 1):
            try:
                self._launch()
            except _PortTaken:
                if attempt == attempts:
                    raise ServerStartError(
                        f"{self.name} server: port {self.port} is already in use"
                    ) from None
                self._port = free_port()
            else:
                self._started_once = True
                return

    def pause(self) -> None:
        """Freeze the server (SIGSTOP to its process group), like a hung host: connections
        stay open and the kernel still accepts new ones, but nothing answers."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a :meth:`pause`-d server run again (SIGCONT); a no-op for a running one."""
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, signum: signal.Signals) -> None:
        if self._process is None:
            raise RuntimeError(f"{self.name} server is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def stop(self) -> None:
        """Shut the server down cleanly and wait for it (no-op if not running). Files are kept."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)  # a paused server could not shut down
            process.send_signal(self.stop_signal)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
        else:
            self._reap(process)

    def kill(self) -> None:
        """SIGKILL the server and every process it started, like a crash. Files are kept.

        Returns once none of them is left, so :meth:`start` can follow at once.
        """
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self._reap(process)

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` on the same port with the same files."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its directory (idempotent)."""
        try:
            self.stop()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir)
                self._dir = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"

    # -- subclass hooks ----------------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self, pid: int) -> bool:
        """Whether the server with process id ``pid`` (not some other one on the port) is
        accepting connections. Called every few milliseconds: must answer quickly."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Create the server's files in :attr:`directory` (first start only)."""

    def _run_as(self) -> dict[str, Any]:
        """Extra ``subprocess`` arguments choosing the OS user the server runs as."""
        return {}

    def _on_stop(self) -> None:
        """Forget connections to the stopped server."""

    # -- internals ---------------------------------------------------------------------------

    def _launch(self) -> None:
        command = self._command()
        with self.log_path.open("ab") as log:
            log.write(f"--- {' '.join(command)}\n".encode())
            log.flush()
            log_offset = log.tell()
            process = subprocess.Popen(  # noqa: S603 - argv of a located binary
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=clean_env(),
                # Own process group: kill() takes the server's children along, and a Ctrl-C
                # meant for the test run does not hit the server before we stop it.
                start_new_session=True,
                **self._run_as(),
            )
        self._process = process
        (self.directory / _SERVER_PID_FILE).write_text(str(process.pid))
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if process.poll() is not None:
                self._reap(process)
                output = self._log_tail(log_offset)
                if re.search(r"address already in use", output, re.IGNORECASE):
                    raise _PortTaken
                raise ServerStartError(
                    f"{self.name} server exited with code {process.returncode} while starting "
                    f"on port {self.port}; log {self.log_path}:\n{output}"
                )
            if self._is_ready(process.pid):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    f"{self.name} server was not ready within {self.startup_timeout}s on port "
                    f"{self.port}; log {self.log_path}:\n{self._log_tail(log_offset)}"
                )
            time.sleep(POLL_INTERVAL)

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        # The children of a killed server are orphans we cannot wait() for: watch the group.
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        self._process = None
        self._on_stop()

    def _log_tail(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return text[-LOG_TAIL_CHARS:]


class _PortTaken(Exception):
    """The server lost the race for the port free_port() picked."""


def find_executable(name: str, bindir: str | Path | None, *, apt_package: str) -> Path:
    """``name`` in ``bindir`` if given, else on ``PATH``; else :class:`ServerNotAvailable`."""
    if bindir is not None:
        path = Path(bindir) / name
        found = str(path) if is_executable(path) else None
        where = str(bindir)
    else:
        found = shutil.which(name)
        where = "PATH"
    if found is None:
        raise ServerNotAvailable(
            f"{name} not found on {where}. Install it with `apt-get install {apt_package}`."
        )
    return Path(found)


def is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def default_base_dir() -> Path | None:
    """tmpfs when it has room (a disk-backed cluster makes CREATE DATABASE ~30x slower), else
    None, meaning the system temp dir."""
    try:
        usable = _SHM.is_dir() and os.access(_SHM, os.W_OK | os.X_OK)
        return _SHM if usable and shutil.disk_usage(_SHM).free >= _SHM_MIN_FREE else None
    except OSError:  # unusable tmpfs is not an error: fall back to the temp dir
        return None


def clean_env() -> dict[str, str]:
    """The environment minus libpq's ``PG*`` variables, which would redirect the tools."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _remove_orphans(base_dir: Path | None, *, prefix: str) -> None:
    """Kill and delete servers whose test run died without cleaning up (SIGKILL, OOM).

    Only directories holding our owner file are considered, only when that owner is gone,
    and a server pid is only killed while it still works inside that directory.
    """
    base = base_dir if base_dir is not None else Path(tempfile.gettempdir())
    for directory in base.glob(f"{prefix}*"):
        try:
            owner = int((directory / _OWNER_FILE).read_text())
        except (OSError, ValueError):  # not ours, or still being created
            continue
        if _pid_alive(owner):
            continue
        try:
            server: int | None = int((directory / _SERVER_PID_FILE).read_text())
        except (OSError, ValueError):  # never launched
            server = None
        if server is not None and _group_alive(server):
            if not _runs_in(server, directory):
                continue  # cannot prove the process is that server: leave it alone
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _group_alive(server) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
        # Leftovers of a dead run: nothing to report if another run removed them first.
        shutil.rmtree(directory, ignore_errors=True)


def _runs_in(pid: int, directory: Path) -> bool:
    """Whether process ``pid`` works inside ``directory`` (servers chdir there)."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:  # gone, or no /proc on this system
        return False
    return cwd == directory or directory in cwd.parents


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: zombies count as alive, the bounded wait still ends
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # After the parenthesised command name: state, ppid, pgrp, ...
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
