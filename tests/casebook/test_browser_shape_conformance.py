"""Conformance in a browser: the real @electric-sql/client (ShapeStream + Shape) and TanStack
DB's Electric collection (``electricCollectionOptions``), their published ESM builds loaded
in headless Chromium through an import map (no bundler), sync a casebook shape from lockstep
on SQLite and PostgreSQL: the paged initial sync, live long-polls across 100 concurrent
writes with no row missed or duplicated (the client's rows equal the database's), recovery
after a 409 must-refetch, and awaitTxId on a write's ``Lockstep-Txid``. The same client
code as the Node conformance (``tests/js/shape_sync.mjs``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, async_playwright
from sqlalchemy import select, text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from casebook.models import Subject, Transaction
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


class ShapeRequests:
    """ASGI middleware: the order in which ``/v1/shape`` requests start and end, as the
    server sees them (table, offset, and whether the answer was up to date)."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, str, str, bool]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/shape":
            await self.app(scope, receive, send)
            return
        query = dict(parse_qsl(scope["query_string"].decode()))
        table, offset = query.get("table", ""), query.get("offset", "")
        self.seen.append(("start", table, offset, False))

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = {k.decode().lower() for k, _ in message["headers"]}
                self.seen.append(("end", table, offset, "electric-up-to-date" in headers))
            await send(message)

        await self.app(scope, receive, sending)


async def test_lockstep_js_syncs_a_scope_in_priority_order(
    casebook_app: FastAPI, chromium: Browser
) -> None:
    """casebook's my-cases through lockstep.js's syncScope: the server sees no request for
    the subjects before the cases were answered up to date, none for the transactions
    before the subjects were; each shape's rows are the caller's; the prefetch follows."""
    ensure_node_clients()
    shape_pages.install(casebook_app)
    seen: list[tuple[str, str, str, bool]] = []
    casebook_app.add_middleware(ShapeRequests, seen=seen)
    services = casebook_app.state.services
    services.offline.endpoint.chunk_rows = 4  # several pages per shape
    db: Database = services.db
    async with serving(casebook_app) as base:
        analyst = await token(base, "analyst@acme.test")
        async with httpx.AsyncClient(base_url=base) as http:
            scope = (
                await http.get(
                    "/v1/sync/scopes/my-cases", headers={"Authorization": f"Bearer {analyst}"}
                )
            ).json()
        client = await BrowserShapeClient.open(chromium, base)
        try:
            await client.sync_scope(services.offline.browser.module_url, analyst, "my-cases")
            await client.until(lambda e: e["event"] == "scope-done")
        finally:
            await client.close()

    steps = [e for e in client.events if e["event"] == "progress"]
    assert [(s["stage"], s["state"], s["name"]) for s in steps[:6]] == [
        ("shape", "syncing", "cases"),
        ("shape", "synced", "cases"),
        ("shape", "syncing", "subjects"),
        ("shape", "synced", "subjects"),
        ("shape", "syncing", "transactions"),
        ("shape", "synced", "transactions"),
    ]
    assert [s["name"] for s in steps[6:]] == scope["prefetch"]
    assert all(s["status"] == 200 for s in steps[6:])
    assert [s["done"] for s in steps if s["state"] != "syncing"] == list(range(1, len(steps) - 2))

    # What the server saw: each priority's first request after the previous one's up-to-date.
    def first_start(table: str) -> int:
        return next(i for i, e in enumerate(seen) if e[0] == "start" and e[1] == table)

    def synced(table: str) -> int:
        return next(i for i, e in enumerate(seen) if e[0] == "end" and e[1] == table and e[3])

    assert synced("cases") < first_start("subjects")
    assert synced("subjects") < first_start("transactions")
    assert sum(1 for e in seen if e[:2] == ("start", "transactions")) > 1  # paged

    # The rows each shape ended with are the caller's.
    rows = {e["name"]: set(e["ids"]) for e in client.events if e["event"] == "scope-rows"}
    mine = [int(p.rsplit("/", 1)[1]) for p in scope["prefetch"]]
    async with db.reader() as session:
        want = {
            "cases": set(mine),
            "subjects": set(
                await session.scalars(select(Subject.id).where(Subject.case_id.in_(mine)))
            ),
            "transactions": set(
                await session.scalars(select(Transaction.id).where(Transaction.case_id.in_(mine)))
            ),
        }
    assert rows == {name: {str(i) for i in ids} for name, ids in want.items()}
