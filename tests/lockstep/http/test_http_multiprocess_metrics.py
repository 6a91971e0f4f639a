"""Multi-process metrics, for real: two worker processes write, a third serves the sum.

prometheus_client picks its storage when it is imported, so each process gets
``PROMETHEUS_MULTIPROC_DIR`` in its environment before it starts — exactly as a deployment
must. The test process itself keeps in-memory metrics. [requirement 17]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lockstep.exceptions import ConfigurationError
from lockstep.observability.exposition import multiprocess_dir
from lockstep.settings import load_settings

WORKER = """
import asyncio, sys
import httpx
from fastapi import FastAPI
from lockstep.http import install_observability
from lockstep.settings import load_settings

app = FastAPI()

@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}

install_observability(app, load_settings(data_dir=sys.argv[1], access_log=False))

async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        if sys.argv[2] == "scrape":
            response = await client.get("/metrics")
            assert response.status_code == 200, response.status_code
            sys.stdout.write(response.headers["content-type"] + "\\n" + response.text)
            return
        for i in range(int(sys.argv[2])):
            assert (await client.get(f"/items/{i}")).status_code == 200

asyncio.run(main())
"""


def worker_env(metrics_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env["LOCKSTEP_METRICS_MULTIPROCESS_DIR"] = str(metrics_dir)
    return env


def test_scrape_sums_requests_of_every_worker(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = worker_env(metrics_dir)
    requests_per_worker = (7, 5)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(n)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in requests_per_worker
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
    assert len(list(metrics_dir.glob("*.db"))) >= 2  # one file set per worker process

    scrape = subprocess.run(
        [sys.executable, "-c", WORKER, str(tmp_path), "scrape"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    content_type, _, body = scrape.stdout.partition("\n")
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    total = sum(requests_per_worker)
    route = ("route", "/items/{item_id}")
    assert samples[("http_requests_total", (("method", "GET"), route, ("status", "200")))] == total
    assert samples[("http_request_duration_seconds_count", (("method", "GET"), route))] == total


def test_setting_without_environment_variable_is_refused(tmp_path: Path) -> None:
    # This process imported prometheus_client without PROMETHEUS_MULTIPROC_DIR.
    settings = load_settings(data_dir=tmp_path, metrics_multiprocess_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="PROMETHEUS_MULTIPROC_DIR"):
        multiprocess_dir(settings)


def test_disagreeing_directories_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "elsewhere"))
    settings = load_settings(data_dir=tmp_path, metrics_multiprocess_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="same directory"):
        multiprocess_dir(settings)


def test_variable_set_after_import_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError, match="before the process starts"):
        multiprocess_dir(load_settings(data_dir=tmp_path))


def test_missing_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(missing))
    with pytest.raises(ConfigurationError, match="does not exist"):
        multiprocess_dir(load_settings(data_dir=tmp_path, metrics_multiprocess_dir=missing))


def test_single_process_by_default(tmp_path: Path) -> None:
    assert multiprocess_dir(load_settings(data_dir=tmp_path)) is None
