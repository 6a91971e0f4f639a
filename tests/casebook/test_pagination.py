"""Keyset pagination stays exact while rows are inserted between pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

Login = Callable[[str], Awaitable[httpx.AsyncClient]]


async def _all_pages(
    client: httpx.AsyncClient, path: str, on_page: Callable[[int], Awaitable[None]]
) -> list[int]:
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        sep = "&" if "?" in path else "?"
        url = path + (f"{sep}cursor={cursor}" if cursor else "")
        body = (await client.get(url)).json()
        seen.extend(item["id"] for item in body["items"])
        pages += 1
        await on_page(pages)
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def test_transactions_pages_survive_concurrent_inserts(login: Login) -> None:
    client = await login("analyst@acme.test")
    path = "/api/v1/cases/1/transactions?limit=7"
    original = [
        t["id"]
        for t in (await client.get("/api/v1/cases/1/transactions?limit=200")).json()["items"]
    ]
    assert len(original) > 14

    async def insert_between_pages(page_no: int) -> None:
        # New rows land both ahead of and behind the cursor's position.
        for posted in ("2099-01-01", "1990-01-01"):
            r = await client.post(
                "/api/v1/cases/1/transactions",
                json={
                    "posted_on": posted,
                    "amount": f"{page_no}.00",
                    "direction": "credit",
                    "category": "late",
                },
            )
            assert r.status_code == 201

    seen = await _all_pages(client, path, insert_between_pages)
    assert len(seen) == len(set(seen)), "a row was served twice"
    assert set(original) <= set(seen), "a row that existed before paging began was skipped"


async def test_cases_pages_cover_everything_once(login: Login) -> None:
    client = await login("analyst@acme.test")

    async def add_case(page_no: int) -> None:
        r = await client.post("/api/v1/cases", json={"reference": f"P-{page_no}", "title": "new"})
        assert r.status_code == 201

    original = {c["id"] for c in (await client.get("/api/v1/cases?limit=200")).json()["items"]}
    seen = await _all_pages(client, "/api/v1/cases?limit=3", add_case)
    assert len(seen) == len(set(seen))
    assert original <= set(seen)
    assert seen == sorted(seen, reverse=True)
