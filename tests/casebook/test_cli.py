"""The ``casebook`` command line, run for real in subprocesses against a temp data dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from casebook.services import MIGRATIONS
from lockstep import head_revision

CASEBOOK = [sys.executable, "-m", "casebook"]


def _run(
    *args: str, data_dir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LOCKSTEP_LOG_FORMAT": "console", **(env or {})}
    return subprocess.run(
        [*CASEBOOK, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def test_help_everywhere() -> None:
    for args in ([], ["serve"], ["seed"], ["db"], ["db", "upgrade"]):
        result = subprocess.run(
            [*CASEBOOK, *args, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout


def test_upgrade_seed_and_refuse_to_seed_twice(tmp_path: Path) -> None:
    assert str(head_revision(MIGRATIONS)) in _run("db", "upgrade", data_dir=tmp_path).stdout
    seeded = _run("seed", "--transactions", "2000", data_dir=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    assert "2000 transactions" in seeded.stdout
    again = _run("seed", "--transactions", "10", data_dir=tmp_path)
    assert again.returncode == 1
    assert "--reset" in again.stderr
    reset = _run("seed", "--transactions", "10", "--reset", data_dir=tmp_path)
    assert reset.returncode == 0, reset.stderr
    assert "10 transactions" in reset.stdout


def test_seed_before_upgrade_says_what_to_do(tmp_path: Path) -> None:
    result = _run("seed", data_dir=tmp_path)
    assert result.returncode == 1
    assert "casebook db upgrade" in result.stderr


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    result = _run("db", "upgrade", data_dir=tmp_path, env={"LOCKSTEP_DB_POOL_SIZE": "lots"})
    assert result.returncode == 1
    assert "LOCKSTEP_DB_POOL_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_migrates_seeds_serves_and_stops_gracefully(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [*CASEBOOK, "serve", "--port", str(port), "--data-dir", str(tmp_path), "--seed", "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "LOCKSTEP_LOG_FORMAT": "json"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # readiness probe, bounded: the server needs a moment to bind
            if proc.poll() is not None:
                pytest.fail(f"serve exited early:\n{proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("serve did not become ready within 60 s")
            time.sleep(0.05)  # noqa: sleep - polling a readiness probe, not waiting on an event
        assert "casebook" in httpx.get(base + "/").text
        token = httpx.post(
            f"{base}/api/v1/auth/token", data={"username": "analyst@acme.test", "password": "demo"}
        ).json()
        cases = httpx.get(
            f"{base}/api/v1/cases", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        assert cases.status_code == 200
        assert cases.json()["items"]
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
