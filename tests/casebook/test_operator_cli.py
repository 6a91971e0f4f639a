"""lockstep's operator CLI on casebook: by import path (``--app
casebook.services:lockstep_app``), and reading a running server's cache counters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from casebook.seed import DEMO_PASSWORD, seed
from casebook.services import MIGRATIONS
from casebook.settings import CasebookSettings
from lockstep import Database, load_settings, upgrade
from lockstep.cli.root import app as lockstep_cli

APP = "casebook.services:lockstep_app"


def lockstep(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(lockstep_cli, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_the_operator_cli_on_casebook(tmp_path: Path) -> None:
    async def prepare() -> None:
        db = Database(load_settings(CasebookSettings, data_dir=tmp_path, slow_query_ms=0))
        try:
            await upgrade(db, MIGRATIONS)
            await seed(db, transactions=300)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    where = ["--data-dir", str(tmp_path)]
    code, output = lockstep("--app", APP, "migration", "status", "--json", *where)
    assert code == 0, output
    status = json.loads(output)
    assert status["alembic"]["current"] == status["alembic"]["head"]
    assert set(status["rollup_tables"]) == {
        "rollup_monthly",
        "rollup_monthly_flagged",
        "rollup_case",
    }
    code, output = lockstep("--app", APP, "feed", "status", "--json", *where)
    assert code == 0, output
    assert json.loads(output)["generation"]
    code, output = lockstep("--app", APP, "rollups", "verify", *where)
    assert (code, output.count("all equal to the GROUP BY")) == (0, 3)
    code, output = lockstep("--app", APP, "migration", "check", *where)
    assert code == 0, output


def test_cache_stats_of_a_running_server(served: Any) -> None:
    token = httpx.post(
        f"{served.base}/api/v1/auth/token",
        data={"username": "analyst@acme.test", "password": DEMO_PASSWORD},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        assert httpx.get(f"{served.base}/api/v1/cases/1", headers=headers).status_code == 200
    code, output = lockstep("cache", "stats", "--url", served.base, "--json")
    assert code == 0, output
    stats = json.loads(output)
    assert stats["lookups"]["miss"] >= 1
    assert stats["lookups"]["hit_l1"] + stats["lookups"].get("hit_l2", 0) >= 2
    assert 0 < stats["hit_ratio"] < 1
    code, output = lockstep("cache", "stats", "--url", served.base)
    assert "hit ratio" in output
