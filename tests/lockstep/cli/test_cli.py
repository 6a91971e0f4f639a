"""The ``lockstep`` operator CLI, driven for real (typer's runner, and a subprocess for
``feed tail --follow``) against a small app found by import path (``shop:app``), on SQLite
and PostgreSQL, and Redis for the cache and relay figures."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import insert, text
from typer.testing import CliRunner

import lockstep
from lockstep import Database, load_settings
from lockstep.cli import migration as migration_cli
from lockstep.cli.root import app as lockstep_cli
from lockstep.testing import free_port

from ..test_schema import DEMO

HERE = Path(__file__).parent


@pytest.fixture
def shop(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The shop app's module, its environment set: database, data dir, migrations dir and
    ``LOCKSTEP_APP=shop:app``. Nothing is migrated yet."""
    monkeypatch.syspath_prepend(str(HERE))
    module = importlib.import_module("shop")
    for name, value in {
        "LOCKSTEP_APP": "shop:app",
        "LOCKSTEP_DATABASE_URL": database_url,
        "LOCKSTEP_DATA_DIR": str(tmp_path),
        "LOCKSTEP_LOG_FORMAT": "console",
        "LOCKSTEP_SLOW_QUERY_MS": "0",
        module.MIGRATIONS_ENV: str(module.write_migrations(tmp_path / "migrations")),
    }.items():
        monkeypatch.setenv(name, value)
    return module


def cli(*args: str) -> Result:
    return CliRunner().invoke(lockstep_cli, list(args))


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def failed(code: int, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


def with_app(shop: ModuleType, work: Any) -> Any:
    """Run ``await work(app)`` with a fresh app of the shop, released after."""

    async def go() -> Any:
        app = shop.app()
        try:
            return await work(app)
        finally:
            if app.lockstep.redis is not None:
                await app.lockstep.redis.aclose()
            await app.database.dispose()

    return asyncio.run(go())


def place(shop: ModuleType, *amounts: int, status: str = "paid") -> None:
    """Orders written through the app (feed and rollup maintained), one transaction."""

    async def write(app: Any) -> None:
        async with app.database.writer() as session:
            session.add_all(
                shop.Order(
                    shop_id=1 + i % 2,
                    placed_on=dt.date(2026, 3, 1 + i),
                    status=status,
                    amount_cents=amount,
                )
                for i, amount in enumerate(amounts)
            )

    with_app(shop, write)


def raw(shop: ModuleType, *statements: Any) -> None:
    """Statements behind lockstep's back (no feed, no rollups)."""

    async def go() -> None:
        database = Database(load_settings())
        try:
            async with database.writer_engine.begin() as connection:
                for statement in statements:
                    await connection.execute(statement)
        finally:
            await database.dispose()

    asyncio.run(go())


@pytest.fixture
def migrated(shop: ModuleType) -> ModuleType:
    """The shop migrated to its head, the rollup's migration written by the CLI."""
    ok("migration", "upgrade")
    ok("migration", "rollup", "shop_monthly", "--rev-id", "0002")
    ok("migration", "upgrade")
    return shop


def test_bad_input_is_one_line_and_an_exit_status(
    shop: ModuleType, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.delenv("LOCKSTEP_APP")
    assert "no app given: pass --app module:attr or set LOCKSTEP_APP" in failed(2, "feed", "status")
    assert "expected module:attr" in failed(2, "--app", "shop", "feed", "status")
    assert "no module named 'nosuch'" in failed(2, "--app", "nosuch.ops:app", "jobs", "list")
    assert "shop has no 'missing'" in failed(2, "--app", "shop:missing", "feed", "status")
    assert "did not give a lockstep app" in failed(2, "--app", "shop:MONTHLY", "feed", "status")
    monkeypatch.setenv("LOCKSTEP_APP", "shop:app")
    assert "cannot apply" not in failed(1, "feed", "status")  # not migrated (below)
    if database_url.startswith("sqlite"):
        assert "does not exist" in failed(1, "jobs", "list")
        assert not Path(database_url.split("///", 1)[1]).exists()  # and was not created
    else:
        output = failed(1, "jobs", "list")
        assert "jobs tables do not exist" in output
        assert "JOBS_TABLES.upgrade(op, to=1)" in output
        monkeypatch.setenv(
            "LOCKSTEP_DATABASE_URL", f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
        )
        assert "unreachable" in failed(1, "feed", "status")
    assert "No such command" in failed(2, "feed", "nothing")
    assert "--limit" in failed(2, "jobs", "list", "--limit", "0")


def test_migrations_status_rollup_check(shop: ModuleType) -> None:
    ok("migration", "upgrade")
    output = failed(1, "migration", "status")
    assert "needs its migration" in output
    assert "`lockstep migration rollup shop_monthly` writes one" in failed(1, "rollups", "verify")
    # Orders written before the rollup exists: its migration must fill it from them.
    orders = shop.Order.__table__
    raw(
        shop,
        insert(orders).values(
            id=1, shop_id=1, placed_on=dt.date(2026, 1, 5), status="paid", amount_cents=500
        ),
        insert(orders).values(
            id=2, shop_id=1, placed_on=dt.date(2026, 1, 9), status="paid", amount_cents=700
        ),
        insert(orders).values(
            id=3, shop_id=2, placed_on=dt.date(2026, 2, 1), status="void", amount_cents=90
        ),
    )
    written = ok("migration", "rollup", "shop_monthly", "--rev-id", "0002")
    assert "0002_rollup_shop_monthly.py" in written
    assert "database schema at revision 0002" in ok("migration", "upgrade")
    status = json.loads(ok("migration", "status", "--json"))
    assert status["ok"] is True
    assert status["lockstep_tables"]["jobs"] == {
        "database": 1,
        "code": 1,
        "ok": True,
        "problem": None,
    }
    assert "no differences" in ok("migration", "check")
    assert "nothing to write" in ok("migration", "tables")
    assert "all equal to the GROUP BY" in ok("rollups", "verify")
    listed = json.loads(ok("rollups", "list", "--json"))
    assert listed[0]["groups"] == 1  # shop 1 in January (the void order is filtered out)


def test_migration_tables_writes_the_upgrade_lockstep_needs(
    migrated: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an upgrade of lockstep raised a set's revision, the CLI writes the migration
    from the revision the database holds to the one the code needs."""

    async def demo_at_1(app: Any) -> None:
        async with app.database.writer_engine.begin() as connection:
            await connection.run_sync(lambda c: DEMO.upgrade_connection(c, to=1))

    with_app(migrated, demo_at_1)
    monkeypatch.setattr(migration_cli, "SETS", {"demo": DEMO})
    monkeypatch.setattr(lockstep, "DEMO_TABLES", DEMO, raising=False)  # as if lockstep shipped it
    assert "demo tables" in failed(1, "migration", "status")
    output = ok("migration", "tables", "--rev-id", "0003")
    path = Path(output.split("wrote ", 1)[1].split()[0])
    code = path.read_text()
    assert "from lockstep import DEMO_TABLES" in code
    assert "DEMO_TABLES.upgrade(op, to=2)" in code
    assert "DEMO_TABLES.downgrade(op, to=1)" in code
    assert "down_revision = '0002'" in code
    ok("migration", "upgrade")
    assert (
        json.loads(ok("migration", "status", "--json"))["lockstep_tables"]["demo"]["database"] == 2
    )
    assert "--only" in failed(2, "migration", "tables", "--only", "nothing")


def test_feed_status_and_tail(migrated: ModuleType) -> None:
    place(migrated, 100, 250)
    place(migrated, 75)
    status = json.loads(ok("feed", "status", "--json"))
    assert status["rows"] == 2
    assert status["relay"] is None  # embedded mode
    assert status["compacted_below"] == 0
    lines = ok("feed", "tail", "--json").splitlines()
    first, second = (json.loads(line) for line in lines)
    assert second["id"] == status["last_id"]
    assert ("orders", "insert") in {(c["table"], c["op"]) for c in first["changes"]}
    assert "shop_monthly" in {c["table"] for c in first["changes"]}  # the rollup's rows too
    human = ok("feed", "tail", "--limit", "1")
    assert f"#{second['id']} " in human
    assert "orders insert" in human
    assert "--from needs --follow" in failed(2, "feed", "tail", "--from", "start")


def test_tail_follow_prints_each_commit_until_ctrl_c(migrated: ModuleType) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lockstep.cli", "feed", "tail", "--follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "LOCKSTEP_FEED_POLL_SECONDS": "0.05"},
    )
    try:
        assert proc.stderr is not None
        assert proc.stdout is not None
        assert "following the change feed from the head" in proc.stderr.readline()
        place(migrated, 999)  # another process's commit: the follower polls for it
        printed = json.loads(proc.stdout.readline())
        assert ("orders", "insert") in {(c["table"], c["op"]) for c in printed["changes"]}
        assert printed["cursor"]
        proc.send_signal(signal.SIGINT)
        rest, errors = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors
    assert rest == ""


def test_rollups_verify_repair_rebuild(migrated: ModuleType) -> None:
    place(migrated, 100, 250, 40)
    raw(migrated, text("UPDATE shop_monthly SET amount_cents = amount_cents + 1 WHERE shop_id = 1"))
    report = json.loads(failed(1, "rollups", "verify", "--json"))
    assert report[0]["rollup"] == "shop_monthly"
    assert report[0]["ok"] is False
    assert report[0]["discrepancies"][0]["group"]["shop_id"] == 1
    assert "1 differ" in failed(1, "rollups", "verify")
    repaired = json.loads(ok("rollups", "repair", "--json"))
    assert repaired[0]["repaired_groups"] == 1
    assert "all equal" in ok("rollups", "verify", "--rollup", "shop_monthly")
    assert "shop_monthly: rebuilt 2 groups" in ok("rollups", "rebuild")
    assert "no rollup named 'nope'" in failed(1, "rollups", "verify", "--rollup", "nope")


def test_jobs(migrated: ModuleType) -> None:
    job_id = with_app(migrated, lambda app: app.jobs.enqueue("shop.send_receipt", {"order_id": 7}))
    listed = json.loads(ok("jobs", "list", "--json"))
    assert [(j["id"], j["state"], j["queue"]) for j in listed] == [(job_id, "queued", "mail")]
    assert json.loads(ok("jobs", "show", str(job_id), "--json"))["args"] == {"order_id": 7}
    stats = {q["queue"]: q for q in json.loads(ok("jobs", "stats", "--json"))}
    assert stats["mail"]["queued"] == 1
    assert (
        ok("jobs", "cancel", str(job_id)).strip() == f"job {job_id} (shop.send_receipt): cancelled"
    )
    assert "already finished" in failed(1, "jobs", "cancel", str(job_id))
    assert "queued again" in ok("jobs", "retry", str(job_id))
    assert "paused" in ok("jobs", "pause", "mail")
    assert json.loads(ok("jobs", "stats", "--json"))[0]["paused"] is True
    assert "resumed" in ok("jobs", "resume", "mail")
    assert "job 999 not found" in failed(1, "jobs", "retry", "999")
    failed(2, "jobs", "cancel", "abc")


def test_cache_stats_and_the_relay_from_redis(
    migrated: ModuleType, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "embedded mode" in failed(1, "cache", "stats")
    monkeypatch.setenv("LOCKSTEP_REDIS_URL", redis_url)
    place(migrated, 10)  # its commit bumps stamps in Redis
    # the relay takes its lease
    with_app(migrated, lambda app: app.lockstep.backend.relay.step(None))
    place(migrated, 20)
    stats = json.loads(ok("cache", "stats", "--json"))
    assert stats["namespace"] == "{shop}"
    assert stats["generation"]
    assert stats["seq"] >= 2
    assert stats["keys"]["st"] > 0
    assert stats["keys"]["applied"] == 2
    assert "version stamps" in ok("cache", "stats")
    relay = json.loads(ok("feed", "status", "--json"))["relay"]
    assert relay["holder"] is not None
    assert relay["lag"] == 1  # the second commit, after the relay's cursor
    assert "relay behind by" in ok("feed", "status")
    failed(1, "cache", "stats", "--url", f"http://127.0.0.1:{free_port()}")


def test_the_installed_command_and_its_help() -> None:
    """pyproject's ``lockstep`` script points at a module that exists, and every group
    explains itself."""
    script = Path(sys.executable).with_name("lockstep")
    for args in ([], ["feed"], ["cache"], ["rollups"], ["jobs"], ["migration"], ["feed", "tail"]):
        result = subprocess.run(
            [str(script), *args, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout
