"""The throwaway servers: life cycle, fault helpers, databases, and missing binaries."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from lockstep.db import Database
from lockstep.exceptions import DatabaseUnavailableError
from lockstep.settings import load_settings
from lockstep.testing import (
    PostgresServer,
    RedisServer,
    ServerNotAvailable,
    ServerStartError,
    find_postgres_bindir,
    free_port,
)

CONFTEST = Path(__file__).parents[2] / "conftest.py"


@pytest.fixture(scope="module")
def own_postgres(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A private cluster these tests may stop and kill (never the shared session one).

    Built from the session server's binaries, so a missing binary skips (or fails in CI) the
    same way.
    """
    with PostgresServer(bindir=postgres_server.bindir) as server:
        server.execute("CREATE DATABASE app")
        server.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)", dbname="app")
        yield server


@pytest.fixture
def own_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    with RedisServer(bindir=redis_server.executable.parent) as server:
        yield server


async def fetch_bodies(server: PostgresServer) -> list[str]:
    connection = await asyncpg.connect(server.dsn("app"))
    try:
        return [row["body"] for row in await connection.fetch("SELECT body FROM notes ORDER BY id")]
    finally:
        await connection.close()


def _refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


# -- PostgreSQL ----------------------------------------------------------------------------------


async def test_postgres_restart_keeps_data_and_port(own_postgres: PostgresServer) -> None:
    own_postgres.execute("TRUNCATE notes", "INSERT INTO notes VALUES (1, 'kept')", dbname="app")
    port = own_postgres.port

    own_postgres.restart()

    assert own_postgres.is_running
    assert own_postgres.port == port
    assert await fetch_bodies(own_postgres) == ["kept"]


async def test_postgres_kill_then_start_recovers_committed_data(
    own_postgres: PostgresServer,
) -> None:
    own_postgres.execute("TRUNCATE notes", "INSERT INTO notes VALUES (1, 'crash')", dbname="app")

    own_postgres.kill()

    assert not own_postgres.is_running
    assert _refuses_connections(own_postgres.port)
    own_postgres.start()
    assert await fetch_bodies(own_postgres) == ["crash"]


async def test_database_ping_follows_postgres_stop_and_start(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    database = Database(load_settings(database_url=own_postgres.url("app"), data_dir=tmp_path))
    try:
        await database.ping()

        own_postgres.stop()
        assert not own_postgres.is_running
        with pytest.raises(DatabaseUnavailableError):
            await database.ping()

        own_postgres.start()
        await database.ping()  # the pool replaces its dead connections
    finally:
        own_postgres.start()
        await database.dispose()


def test_postgres_stop_and_kill_are_idempotent(own_postgres: PostgresServer) -> None:
    own_postgres.stop()
    own_postgres.stop()
    own_postgres.kill()
    assert not own_postgres.is_running
    own_postgres.start()
    own_postgres.start()
    assert own_postgres.is_running


async def test_create_database_copies_template(postgres_server: PostgresServer) -> None:
    postgres_server.create_database("servers_template")
    postgres_server.execute(
        "CREATE TABLE seeded (id int)", "INSERT INTO seeded VALUES (42)", dbname="servers_template"
    )
    try:
        url = postgres_server.create_database("servers_copy", template="servers_template")
        assert url == f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_server.port}/servers_copy"
        connection = await asyncpg.connect(postgres_server.dsn("servers_copy"))
        try:
            assert await connection.fetchval("SELECT id FROM seeded") == 42
        finally:
            await connection.close()
        with pytest.raises(asyncpg.DuplicateDatabaseError):
            postgres_server.create_database("servers_copy")
    finally:
        postgres_server.drop_database("servers_copy")
        postgres_server.drop_database("servers_template")


async def test_drop_database_disconnects_clients_and_ignores_missing(
    postgres_server: PostgresServer,
) -> None:
    postgres_server.create_database("servers_doomed")
    connection = await asyncpg.connect(postgres_server.dsn("servers_doomed"))
    try:
        postgres_server.drop_database("servers_doomed")  # does not wait for the client
    finally:
        connection.terminate()
    postgres_server.drop_database("servers_doomed")

    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(postgres_server.dsn("servers_doomed"))


def test_context_manager_removes_process_and_files(postgres_server: PostgresServer) -> None:
    with PostgresServer(bindir=postgres_server.bindir) as server:
        directory, port = server.directory, server.port
        assert (directory / "data" / "PG_VERSION").exists()

    assert not server.is_running
    assert not directory.exists()
    assert _refuses_connections(port)


# -- Redis ---------------------------------------------------------------------------------------


def test_redis_restart_comes_back_empty_on_the_same_port(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url())
    try:
        client.set("k", "v")
        port = own_redis.port

        own_redis.restart()

        assert own_redis.port == port
        assert client.get("k") is None  # no persistence
        client.set("k", "again")
        own_redis.kill()
        assert not own_redis.is_running
        with pytest.raises(redis.ConnectionError):
            client.ping()
        own_redis.start()
        assert client.ping()
    finally:
        client.close()


def test_redis_restarts_from_its_last_snapshot(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url())
    try:
        client.set("k", "saved")
        own_redis.snapshot()
        client.set("k", "after")
        client.set("later", "x")
        own_redis.kill()
        own_redis.start()
        assert client.get("k") == b"saved"  # what the snapshot held, as an old RDB would
        assert client.get("later") is None
        own_redis.stop()  # a clean stop writes nothing either (no save points)
        own_redis.start()
        assert client.get("k") == b"saved"
    finally:
        client.close()


def test_redis_pause_freezes_and_resume_thaws(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url(), socket_timeout=0.2)
    try:
        own_redis.pause()
        assert own_redis.is_running
        with pytest.raises(redis.TimeoutError):
            client.ping()  # connections stay open, nothing answers
        own_redis.resume()
        assert client.ping()
        own_redis.config_set("maxmemory", 1_000_000)
        assert client.config_get("maxmemory") == {"maxmemory": "1000000"}
        own_redis.pause()
        own_redis.stop()  # a paused server still stops cleanly
        assert not own_redis.is_running
    finally:
        client.close()


def test_redis_flushall_empties_every_database(own_redis: RedisServer) -> None:
    clients = [redis.Redis.from_url(own_redis.url(db)) for db in (0, 1)]
    try:
        for client in clients:
            client.set("k", "v")

        own_redis.flushall()

        assert [client.dbsize() for client in clients] == [0, 0]
    finally:
        for client in clients:
            client.close()


def test_redis_url_fixture_is_clean(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("left-behind", "1")  # the next test using redis_url must not see it
    finally:
        client.close()


def test_fixed_port_in_use_is_a_start_error(redis_server: RedisServer) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server = RedisServer(bindir=redis_server.executable.parent, port=blocker.getsockname()[1])

        with pytest.raises(ServerStartError, match="already in use"):
            server.start()
        server.close()


# -- missing binaries and leftovers --------------------------------------------------------------


def test_missing_postgres_binaries_name_the_apt_package(tmp_path: Path) -> None:
    with pytest.raises(ServerNotAvailable, match=r"apt-get install postgresql`"):
        PostgresServer(bindir=tmp_path)


def test_missing_redis_binary_names_the_apt_package(tmp_path: Path) -> None:
    with pytest.raises(ServerNotAvailable, match=r"apt-get install redis-server`"):
        RedisServer(bindir=tmp_path)


def test_redis_missing_from_an_empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(
        ServerNotAvailable, match=r"not found on PATH.*apt-get install redis-server"
    ):
        RedisServer()


def test_postgres_binaries_on_path_come_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("initdb", "postgres"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert find_postgres_bindir() == tmp_path


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


_ORPHANING_RUN = """
import sys, time
from lockstep.testing import RedisServer
server = RedisServer(bindir=sys.argv[1], base_dir=sys.argv[2])
server.start()
print(server.port, flush=True)
sys.stdin.readline()  # killed here, never returns
"""


def test_servers_left_by_a_killed_run_are_removed(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", _ORPHANING_RUN, str(redis_server.executable.parent), str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert run.stdout is not None
    orphan_port = int(run.stdout.readline())
    run.send_signal(signal.SIGKILL)
    run.communicate()
    assert not _refuses_connections(orphan_port)  # the server outlived its test run
    assert len(list(tmp_path.glob("lockstep-redis-*"))) == 1

    with RedisServer(bindir=redis_server.executable.parent, base_dir=tmp_path) as server:
        assert [p.name for p in tmp_path.glob("lockstep-redis-*")] == [server.directory.name]
        assert _refuses_connections(orphan_port)


# -- the conftest's missing-server policy --------------------------------------------------------


@pytest.fixture
def suite_needing_servers(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """A copy of our conftest plus tests needing servers, pointed at binaries that are not there."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "markers =\n    postgres: pg\n    redis: redis\n"
    )
    pytester.makepyfile(
        test_needs_servers=(
            "def test_postgres(postgres_url):\n    pass\n\n"
            "def test_redis(redis_url):\n    pass\n\n"
            "def test_sqlite_only(sqlite_url):\n    pass\n"
        )
    )
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    monkeypatch.setenv("LOCKSTEP_TEST_POSTGRES_BINDIR", str(empty))
    monkeypatch.setenv("LOCKSTEP_TEST_REDIS_BINDIR", str(empty))
    return pytester


def test_missing_server_skips_outside_ci(
    suite_needing_servers: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)

    result = suite_needing_servers.runpytest("-rs")

    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*apt-get install postgresql*", "*apt-get install redis-server*"])


def test_missing_server_fails_in_ci(
    suite_needing_servers: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")

    result = suite_needing_servers.runpytest()

    result.assert_outcomes(passed=1, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*CI=true: a missing server fails the run*"])


async def test_servers_are_usable_from_inside_an_event_loop(
    postgres_server: PostgresServer,
) -> None:
    # The sync API must not need (or break) the caller's running loop.
    postgres_server.create_database("servers_in_loop")
    postgres_server.drop_database("servers_in_loop")
