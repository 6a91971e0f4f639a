"""The browser module as served (``BrowserModule``: content-hashed immutable files, the
service worker's stable URL and scope header) and its outbox's logic under Node
(``tests/js/outbox.test.mjs``: backoff, dead letters, retries, lost responses)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from lockstep.offline import BrowserModule
from lockstep.offline.browser import accepts_gzip

JS = Path(__file__).resolve().parents[2] / "js"


async def test_files_are_content_hashed_and_immutable_the_worker_is_not() -> None:
    browser = BrowserModule()
    app = FastAPI()
    browser.install(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        module = await client.get(browser.module_url)
        assert module.status_code == 200
        assert module.headers["content-type"].startswith("text/javascript")
        assert module.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert 'from "./outbox.js"' in module.text
        vendored = await client.get(browser.base + "vendor/electric-sql-client/index.browser.mjs")
        assert vendored.status_code == 200
        assert "ShapeStream" in vendored.text

        worker = await client.get("/lockstep/sw.js")
        assert worker.headers["service-worker-allowed"] == "/"
        assert worker.headers["cache-control"] == "no-cache"
        assert f'"{browser.base}worker.js"' in worker.text

        old = await client.get("/lockstep/0000000000000000/lockstep.js")
        assert old.status_code == 404
        assert old.headers["cache-control"] == "no-store"
        assert (await client.get(browser.base + "missing.js")).status_code == 404


async def test_files_are_sent_gzipped_to_whoever_accepts_it() -> None:
    browser = BrowserModule()
    app = FastAPI()
    browser.install(app)
    url = browser.base + "vendor/electric-sql-client/index.browser.mjs"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        plain = await client.get(url, headers={"Accept-Encoding": "identity"})
        packed = await client.get(url, headers={"Accept-Encoding": "br;q=1, gzip;q=0.5"})
        refused = await client.get(url, headers={"Accept-Encoding": "gzip;q=0, *"})
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.content == plain.content  # httpx decoded it: the same file
    assert packed.num_bytes_downloaded < plain.num_bytes_downloaded // 2
    assert "content-encoding" not in refused.headers
    assert plain.headers["vary"] == packed.headers["vary"] == "Accept-Encoding"
    assert packed.headers["cache-control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip, deflate, br", True),
        ("GZIP", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, *", False),
        ("*;q=0", False),
        ("identity", False),
        ("", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding_is_read_with_its_weights(header: str, gzip: bool) -> None:
    assert accepts_gzip(header) is gzip


def test_the_hash_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "lockstep.js").write_text("export const a = 1;\n")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "x.mjs").write_text("export {};\n")
    first = BrowserModule(tmp_path)
    (tmp_path / "vendor" / "x.mjs").write_text("export const b = 2;\n")
    second = BrowserModule(tmp_path)
    assert first.version != second.version
    assert second.module_url == f"/lockstep/{second.version}/lockstep.js"


def test_outbox_logic_under_node() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm are needed for the browser module's unit tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if not (JS / "node_modules" / "fake-indexeddb").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, capture_output=True
        )
    run = subprocess.run(
        [node, "--test", "outbox.test.mjs"], cwd=JS, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
