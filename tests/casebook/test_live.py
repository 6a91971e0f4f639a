"""casebook's live pages, in a real browser against ``casebook serve`` (embedded mode): a
transaction another user adds appears on an open case page without a reload; and through
centrifuge-python, a user of another organization cannot subscribe to the case."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import centrifuge
import httpx
from playwright.sync_api import Browser, expect

from casebook.seed import DEMO_PASSWORD

from .test_browser import browser, open_first_case, tab

__all__ = ["browser"]  # the fixture, shared with test_browser


def _token(base: str, email: str) -> str:
    response = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_a_new_transaction_appears_on_an_open_case_page(served: Any, browser: Browser) -> None:
    page = browser.new_page()
    page.set_default_timeout(30_000)
    open_first_case(page, served.base)
    expect(page.locator("#live")).to_have_text("● live")
    expect(page.locator(".page[data-live=subscribed]")).to_have_count(1)
    case_id = int(page.url.split("/app/cases/")[1].split("/")[0])
    token = _token(served.base, "analyst@acme.test")

    def add(counterparty: str) -> None:
        created = httpx.post(
            f"{served.base}/api/v1/cases/{case_id}/transactions",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "posted_on": "2026-05-01",
                "amount": "42.00",
                "direction": "debit",
                "category": "live-test",
                "counterparty": counterparty,
            },
        )
        assert created.status_code == 201, created.text

    # The overview (the case's rollup) and, on its tab, the ledger are redrawn as they commit.
    add("Live Counterparty GmbH")
    expect(page.locator("#dashboard-rows tr", has_text="live-test")).to_have_count(1)
    tab(page, "Transactions")
    expect(page.locator("#txn-rows tr", has_text="Live Counterparty GmbH")).to_have_count(1)
    expect(page.locator(".page[data-live=subscribed]")).to_have_count(1)
    add("Second Live Counterparty AG")
    expect(page.locator("#txn-rows tr", has_text="Second Live Counterparty AG")).to_have_count(1)


def test_another_organization_cannot_follow_a_case(served: Any) -> None:
    acme = _token(served.base, "analyst@acme.test")
    cases = httpx.get(
        f"{served.base}/api/v1/cases", headers={"Authorization": f"Bearer {acme}"}
    ).json()
    case_id = cases["items"][0]["id"]
    globex = _token(served.base, "analyst@globex.test")
    asyncio.run(
        _refused(served.base.replace("http", "ws") + "/connection/websocket", globex, case_id)
    )


async def _refused(url: str, token: str, case_id: int) -> None:
    ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Events(centrifuge.SubscriptionEventHandler):
        async def on_unsubscribed(self, ctx: Any) -> None:
            if not ended.done():
                ended.set_result(ctx.code)

    client = centrifuge.Client(url, token=token, proxy=None)
    try:
        await client.connect()
        sub = client.new_subscription(f"case:{case_id}", events=Events())
        with contextlib.suppress(centrifuge.CentrifugeError):
            await sub.subscribe()
        async with asyncio.timeout(15):
            assert await ended == 103
    finally:
        await client.disconnect()
