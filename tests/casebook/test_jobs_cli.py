"""``casebook worker`` and ``casebook jobs ...``: clear errors and exit codes on bad input,
list / retry / cancel, a real worker process stopped by SIGTERM, and the in-process worker
of ``casebook serve`` in embedded mode (requirement 13, CLI side)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from casebook.cli import app
from casebook.seed import seed
from casebook.services import MIGRATIONS, Services
from casebook.settings import CasebookSettings
from casebook.tasks import fan_out
from lockstep import Database, load_settings, upgrade

CASEBOOK = [sys.executable, "-m", "casebook"]


def settings_for(data_dir: Path) -> CasebookSettings:
    return load_settings(
        CasebookSettings, data_dir=data_dir, env="test", log_format="console", slow_query_ms=0
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A migrated, seeded embedded (SQLite) casebook."""

    async def prepare() -> None:
        db = Database(settings_for(tmp_path))
        try:
            await upgrade(db, MIGRATIONS)
            await seed(db, transactions=100)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    return tmp_path


def cli(*args: str, data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.output


def enqueue_fan_out(data_dir: Path) -> int:
    async def go() -> int:
        services = Services.build(settings_for(data_dir))
        try:
            job_id = await services.jobs.enqueue(
                fan_out, {"organization_id": 1, "subject": "Hello", "body": "from the CLI test"}
            )
            assert job_id is not None
            return job_id
        finally:
            await services.db.dispose()

    return asyncio.run(go())


def test_bad_input_says_what_is_wrong_and_exits_non_zero(data_dir: Path) -> None:
    assert cli("jobs", "list", data_dir=data_dir) == (0, "no jobs\n")
    code, output = cli("jobs", "retry", "999", data_dir=data_dir)
    assert code == 1
    assert "job 999 not found" in output
    assert "Traceback" not in output
    assert cli("jobs", "cancel", "abc", data_dir=data_dir)[0] == 2
    code, output = cli("jobs", "list", "--state", "bogus", data_dir=data_dir)
    assert code == 2
    assert "bogus" in output
    code, output = cli("worker", "--queues", "reports,:3", data_dir=data_dir)
    assert code == 2
    assert "--queues" in output


def test_list_cancel_retry_pause(data_dir: Path) -> None:
    job_id = enqueue_fan_out(data_dir)
    code, output = cli("jobs", "list", data_dir=data_dir)
    assert code == 0
    assert "casebook.notify.fan_out" in output
    assert "queued" in output
    code, output = cli("jobs", "cancel", str(job_id), data_dir=data_dir)
    assert (code, output.strip()) == (0, f"job {job_id} (casebook.notify.fan_out): cancelled")
    code, output = cli("jobs", "cancel", str(job_id), data_dir=data_dir)
    assert code == 1
    assert "already finished" in output
    code, output = cli("jobs", "retry", str(job_id), data_dir=data_dir)
    assert (code, output.strip()) == (0, f"job {job_id} (casebook.notify.fan_out) is queued again")
    assert str(job_id) in cli("jobs", "list", "--state", "queued", data_dir=data_dir)[1]
    assert cli("jobs", "pause", "default", data_dir=data_dir)[0] == 0
    code, output = cli("jobs", "stats", data_dir=data_dir)
    assert code == 0
    assert "yes" in output  # paused
    assert cli("jobs", "resume", "default", data_dir=data_dir)[0] == 0


def _outbox_count(data_dir: Path) -> int:
    async def count() -> int:
        db = Database(settings_for(data_dir))
        try:
            async with db.reader() as session:
                return int(await session.scalar(text("SELECT count(*) FROM outbox")) or 0)
        finally:
            await db.dispose()

    return asyncio.run(count())


def test_worker_process_runs_jobs_and_stops_on_sigterm(data_dir: Path) -> None:
    enqueue_fan_out(data_dir)
    proc = subprocess.Popen(
        [*CASEBOOK, "worker", "--queues", "default,notifications:2", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "LOCKSTEP_LOG_FORMAT": "console", "LOCKSTEP_JOBS_POLL_SECONDS": "0.1"},
    )
    try:
        deadline = time.monotonic() + 60
        while _outbox_count(data_dir) < 2:  # acme's analyst and admin are e-mailed
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the worker did not deliver within 60 s"
            time.sleep(0.1)  # noqa: sleep - waiting on another process's work
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "serving default (10 slots), notifications (2 slots)" in output
    assert "stopping" in output


def test_serve_runs_an_embedded_worker(served: Any) -> None:
    """``casebook serve`` in embedded mode renders a report with no separate worker."""
    base = served.base
    deadline = time.monotonic() + 90
    token = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": "analyst@acme.test", "password": "demo"}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(f"{base}/api/v1/cases/1/reports", headers=headers)
    assert created.status_code == 202, created.text
    report_url = f"{base}/api/v1/reports/{created.json()['id']}"
    while (report := httpx.get(report_url, headers=headers).json())["status"] == "pending":
        assert time.monotonic() < deadline, "the embedded worker did not render the report"
        time.sleep(0.1)  # noqa: sleep - waiting on another process's work
    assert report["status"] == "ready"
    pdf = httpx.get(base + report["file_url"], headers=headers)
    assert pdf.content.startswith(b"%PDF")
    status, output = served.stop()
    assert status == 0, output
