"""Conformance in a browser: the real @electric-sql/client (ShapeStream + Shape) and TanStack
DB's Electric collection (``electricCollectionOptions``), their published ESM builds loaded
in headless Chromium through an import map (no bundler), sync a casebook shape from lockstep
on SQLite and PostgreSQL: the paged initial sync, live long-polls across 100 concurrent
writes with no row missed or duplicated (the client's rows equal the database's), recovery
after a 409 must-refetch, and awaitTxId on a write's ``Lockstep-Txid``. The same client
code as the Node conformance (``tests/js/shape_sync.mjs``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, async_playwright
from sqlalchemy import text

from lockstep import Database

from . import shape_pages
from .shape_clients import ensure_node_clients, serving
from .shape_pages import BrowserShapeClient
from .test_browser import chromium_path
from .test_shape_conformance import expected_cases, hundred_writes, token


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def live(casebook_app: FastAPI) -> AsyncIterator[str]:
    ensure_node_clients()
    shape_pages.install(casebook_app)
    offline = casebook_app.state.services.offline
    offline.endpoint.chunk_rows = 4  # the initial sync pages
    offline.endpoint.long_poll_seconds = 2.0
    async with serving(casebook_app) as base:
        yield base


@pytest.mark.parametrize("mode", ["stream", "tanstack"])
async def test_the_real_clients_in_chromium_stay_exact_across_writes_and_a_refetch(
    live: str, casebook_app: FastAPI, chromium: Browser, mode: str
) -> None:
    db: Database = casebook_app.state.services.db
    analyst = await token(live, "analyst@acme.test")
    admin = await token(live, "admin@acme.test")
    client = await BrowserShapeClient.start(chromium, live, analyst, {"table": "cases"}, mode)
    try:
        await client.until_rows(await expected_cases(db))  # the paged initial sync
        assert len(client.rows or {}) > 4  # more than one page

        await hundred_writes(live, db, analyst, admin)
        await client.until_rows(await expected_cases(db))

        # A write the log cannot name row by row rotates the table: 409, then a refetch.
        async with db.writer() as session:
            await session.execute(text("UPDATE cases SET priority = priority + 1"))
        await client.until_rows(await expected_cases(db))
        if mode == "stream":
            assert any(e["event"] == "must-refetch" for e in client.events)

        # Live after the refetch; TanStack's awaitTxId resolves on a write's txid.
        async with httpx.AsyncClient(base_url=live) as http:
            response = await http.patch(
                f"/api/v1/cases/{int(next(iter(client.rows or {})))}",
                json={"title": "awaited in chromium"},
                headers={"Authorization": f"Bearer {analyst}"},
            )
        assert response.status_code == 200, response.text
        if mode == "tanstack":
            await client.await_txid(int(response.headers["Lockstep-Txid"]))
            await client.until(lambda e: e["event"] == "txid")
            assert client.events[-1]["ok"] is True, client.events[-1]
        await client.until_rows(await expected_cases(db))
        assert "awaited in chromium" in {r["title"] for r in (client.rows or {}).values()}
    finally:
        await client.close()
