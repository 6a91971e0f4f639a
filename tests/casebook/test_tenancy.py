"""Tenant isolation: another organization's rows are invisible, and probing them is a 404."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

Login = Callable[[str], Awaitable[httpx.AsyncClient]]


async def test_globex_cannot_see_or_touch_acme_rows(login: Login) -> None:
    acme = await login("analyst@acme.test")
    globex = await login("analyst@globex.test")
    acme_case = (await acme.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    acme_txn = (await acme.get(f"/api/v1/cases/{acme_case}/transactions?limit=1")).json()["items"][
        0
    ]
    acme_subject = (await acme.get(f"/api/v1/cases/{acme_case}/subjects")).json()["items"][0]["id"]

    missing = await globex.get("/api/v1/cases/999999")
    for path in (
        f"/api/v1/cases/{acme_case}",
        f"/api/v1/cases/{acme_case}/transactions",
        f"/api/v1/cases/{acme_case}/subjects",
        f"/api/v1/transactions/{acme_txn['id']}",
        f"/api/v1/subjects/{acme_subject}",
    ):
        response = await globex.get(path)
        assert response.status_code == 404, path
        # Same code and shape as a row that does not exist: nothing to tell them apart.
        assert response.json()["error"]["code"] == missing.json()["error"]["code"]

    assert (
        await globex.patch(f"/api/v1/cases/{acme_case}", json={"title": "x"})
    ).status_code == 404
    assert (
        await globex.post(
            f"/api/v1/cases/{acme_case}/transactions",
            json={"posted_on": "2026-01-01", "amount": "1", "direction": "debit", "category": "x"},
        )
    ).status_code == 404
    assert (await acme.get(f"/api/v1/cases/{acme_case}")).json()["title"] != "x"


async def test_lists_only_show_own_organization(login: Login) -> None:
    acme = await login("analyst@acme.test")
    globex = await login("analyst@globex.test")
    acme_ids = {c["id"] for c in (await acme.get("/api/v1/cases?limit=200")).json()["items"]}
    globex_ids = {c["id"] for c in (await globex.get("/api/v1/cases?limit=200")).json()["items"]}
    assert acme_ids
    assert globex_ids
    assert not acme_ids & globex_ids
    globex_subjects = (await globex.get("/api/v1/subjects?limit=200")).json()["items"]
    assert {s["case_id"] for s in globex_subjects} <= globex_ids
