"""``casebook import`` and ``casebook aggregates verify|repair|rebuild``, run for real."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from casebook.seed import seed
from casebook.services import MIGRATIONS
from casebook.settings import CasebookSettings
from lockstep import Database, load_settings, upgrade

CASEBOOK = [sys.executable, "-m", "casebook"]


def run(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCKSTEP_LOG_FORMAT": "console", "COLUMNS": "200"}
    return subprocess.run(
        [*CASEBOOK, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def prepare(data_dir: Path) -> None:
    """Migrated and seeded in-process (the CLI's own startup is what is slow)."""
    db = Database(load_settings(CasebookSettings, data_dir=data_dir, slow_query_ms=0))
    try:
        await upgrade(db, MIGRATIONS)
        await seed(db, transactions=1000)
    finally:
        await db.dispose()


def test_import_then_verify_tamper_repair_rebuild(tmp_path: Path) -> None:
    asyncio.run(prepare(tmp_path))
    statement = tmp_path / "statement.csv"
    statement.write_text("Date;Amount;Category\n2026-03-01;-10,50;wire\n2026-03-02;7;card\n")
    imported = run("import", str(statement), "--case", "2", data_dir=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "2 transactions imported into case 2" in imported.stdout
    with sqlite3.connect(tmp_path / "casebook.db") as conn:  # a write behind lockstep's back
        conn.execute("UPDATE rollup_case SET amount_cents = amount_cents + 1 WHERE case_id = 2")
    broken = run("aggregates", "verify", "--rollup", "rollup_case", data_dir=tmp_path)
    assert broken.returncode == 1
    assert "differ" in broken.stdout
    repaired = run("aggregates", "repair", data_dir=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert "rollup_case: repaired" in repaired.stdout
    rebuilt = run("aggregates", "rebuild", data_dir=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rollup_monthly: rebuilt" in rebuilt.stdout


def test_sweep_uploads_removes_what_no_import_waits_for(tmp_path: Path) -> None:
    asyncio.run(prepare(tmp_path))
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    cut_off, arriving = uploads / "lockstep-upload-cut-off.csv", uploads / "lockstep-upload-new.csv"
    cut_off.write_text("date,amount\n")
    arriving.write_text("date,amount\n")
    then = time.time() - 2 * 3600
    os.utime(cut_off, (then, then))
    swept = run("sweep-uploads", data_dir=tmp_path)
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.splitlines() == ["removed uploads/lockstep-upload-cut-off.csv"]
    assert arriving.exists()
    assert run("sweep-uploads", data_dir=tmp_path).stdout == "nothing to sweep\n"
    refused = run("sweep-uploads", "--grace-minutes", "-5", data_dir=tmp_path)
    assert refused.returncode != 0
    assert "--grace-minutes" in refused.stderr
    assert arriving.exists()
