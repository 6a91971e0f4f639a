"""Fixtures shared by the whole suite: real servers per session, fresh databases per test.

* ``postgres_server`` / ``redis_server`` (session): throwaway servers from the installed
  binaries. When a binary is missing the tests that need it are skipped, except with
  ``CI=true``, where they fail: CI must never go green by skipping the real backends.
* ``database_url`` runs a test once per backend (ids ``sqlite`` and ``postgresql``, the latter
  marked ``postgres``); ``sqlite_url`` / ``postgres_url`` pick one. Every URL is a new,
  empty database owned by the test.
* ``settings`` / ``database`` build on ``database_url``; ``make_database`` builds more.
* ``redis_url``: the session Redis, flushed before the test.

Tests that use ``postgres_*`` or ``redis_*`` fixtures are marked ``postgres`` / ``redis``
automatically, so ``-m "not postgres and not redis"`` runs without any server.
``LOCKSTEP_TEST_POSTGRES_BINDIR`` / ``LOCKSTEP_TEST_REDIS_BINDIR`` point the servers at
other binaries. Every other ``LOCKSTEP_*`` variable is removed for each test, so the
developer's environment cannot leak into settings.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from lockstep.db import Database
from lockstep.settings import ENV_PREFIX, Settings, load_settings
from lockstep.testing import PostgresServer, RedisServer, ServerNotAvailable

pytest_plugins = ["pytester"]

POSTGRES_BINDIR_ENV = "LOCKSTEP_TEST_POSTGRES_BINDIR"
REDIS_BINDIR_ENV = "LOCKSTEP_TEST_REDIS_BINDIR"
_TEST_ENV_PREFIX = "LOCKSTEP_TEST_"

_database_numbers = itertools.count(1)


def in_ci() -> bool:
    """Whether the run is in CI (``CI=true``), where a missing server is a failure."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def server_unavailable(exc: ServerNotAvailable) -> NoReturn:
    """Skip the requesting test, or fail it in CI."""
    if in_ci():
        pytest.fail(f"{exc} (CI=true: a missing server fails the run)", pytrace=False)
    pytest.skip(str(exc))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"postgres_server", "postgres_url"}:
            item.add_marker(pytest.mark.postgres)
        if names & {"redis_server", "redis_url"}:
            item.add_marker(pytest.mark.redis)


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) and not name.startswith(_TEST_ENV_PREFIX):
            monkeypatch.delenv(name)


# -- servers (one per session) ---------------------------------------------------------------


def new_postgres() -> PostgresServer:
    """A PostgreSQL cluster of the caller's own (not started): for tests that stop, restart
    or break it. Skips, or fails under CI=true, when the server is not installed."""
    try:
        return PostgresServer(bindir=os.environ.get(POSTGRES_BINDIR_ENV) or None)
    except ServerNotAvailable as exc:
        server_unavailable(exc)


def new_redis() -> RedisServer:
    """A Redis of the caller's own (not started); see :func:`new_postgres`."""
    try:
        return RedisServer(bindir=os.environ.get(REDIS_BINDIR_ENV) or None)
    except ServerNotAvailable as exc:
        server_unavailable(exc)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the whole session. Do not stop it: start your own for faults."""
    with new_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis for the whole session; use ``redis_url`` for a flushed one per test."""
    with new_redis() as server:
        yield server


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for this test alone (it gets stopped, restarted, killed)."""
    with new_postgres() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis for this test alone (it gets frozen, flushed, restarted, killed)."""
    with new_redis() as server:
        yield server


# -- databases (one per test) ----------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An SQLite file URL in the test's ``tmp_path`` (the file does not exist yet)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty PostgreSQL database on the session server, dropped after the test."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    name = f"t{next(_database_numbers)}_{slug}"[:63]
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL; the test runs once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


def build_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: ``env="test"``, console logs, slow-query log off, ``data_dir``."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "env": "test",
        "log_format": "console",
        "slow_query_ms": 0,
        "data_dir": data_dir,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Test settings (see :func:`build_settings`) for ``database_url``."""
    return build_settings(database_url, tmp_path)


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """A :class:`Database` over ``settings``, disposed after the test."""
    db = Database(settings)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def make_database(tmp_path: Path) -> AsyncIterator[Callable[..., Database]]:
    """``make_database(url, **setting_overrides)``: more Databases, all disposed after."""
    made: list[Database] = []

    def make(database_url: str, **overrides: Any) -> Database:
        db = Database(build_settings(database_url, tmp_path, **overrides))
        made.append(db)
        return db

    yield make
    for db in made:
        await db.dispose()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis (database 0), empty at the start of the test."""
    redis_server.flushall()
    return redis_server.url()
