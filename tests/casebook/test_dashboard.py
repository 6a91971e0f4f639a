"""Dashboards read from the rollups: equal to the ledger's GROUP BY, tenant-scoped, cached
(an unchanged poll is a 304) and invalidated by a new transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from casebook.models import Transaction
from casebook.rollups import AGGREGATES
from lockstep import Database

Login = Callable[[str], Awaitable[httpx.AsyncClient]]
T = Transaction


async def ledger(
    db: Database, *where: Any, by: tuple[Any, ...]
) -> dict[tuple[Any, ...], tuple[int, int]]:
    """(count, amount) per ``by`` from a GROUP BY over the transactions themselves."""
    stmt = select(*by, func.count(), func.sum(T.amount_cents)).where(*where).group_by(*by)
    async with db.reader() as s:
        return {
            tuple(getattr(v, "value", v) for v in row[:-2]): (int(row[-2]), int(row[-1]))
            for row in (await s.execute(stmt)).all()
        }


async def test_summary_equals_the_ledger_and_is_tenant_scoped(
    login: Login, casebook_app: FastAPI
) -> None:
    db = casebook_app.state.services.db
    for report in await AGGREGATES.verify(db):  # the seed's bulk inserts kept them exact
        assert report.ok, [d.describe() for d in report.discrepancies]
    for email, org in (("analyst@acme.test", 1), ("analyst@globex.test", 2)):
        client = await login(email)
        body = (await client.get("/api/v1/dashboard/summary")).json()
        cleared = {
            (r["currency"], r["direction"]): (r["count"], r["amount_cents"])
            for r in body["cleared"]
        }
        expected = await ledger(
            db, T.organization_id == org, T.flagged.is_(False), by=(T.currency, T.direction)
        )
        assert cleared == expected
        flagged = {r["currency"]: (r["count"], r["amount_cents"]) for r in body["flagged"]}
        expected_flagged = await ledger(
            db, T.organization_id == org, T.flagged.is_(True), by=(T.currency,)
        )
        assert flagged == {k[0]: v for k, v in expected_flagged.items()}
        assert sum(m["count"] for m in body["months"]) == sum(n for n, _ in expected.values())
        month = body["months"][0]["month"]
        one = (await client.get("/api/v1/dashboard/summary", params={"month": month})).json()
        assert one["month"] == month
        assert sum(r["count"] for r in one["cleared"]) == sum(
            m["count"] for m in body["months"] if m["month"] == month
        )


async def test_unchanged_poll_is_304_until_a_new_transaction(login: Login) -> None:
    acme, globex = await login("analyst@acme.test"), await login("analyst@globex.test")
    first = await acme.get("/api/v1/dashboard/summary")
    etag = first.headers["etag"]
    assert (
        await acme.get("/api/v1/dashboard/summary", headers={"If-None-Match": etag})
    ).status_code == 304
    other = (await globex.get("/api/v1/dashboard/summary")).headers["etag"]
    cases = (await acme.get("/api/v1/cases", params={"limit": 1})).json()["items"]
    created = await acme.post(
        f"/api/v1/cases/{cases[0]['id']}/transactions",
        json={
            "posted_on": "2026-05-01",
            "amount": "12.34",
            "direction": "credit",
            "category": "wire",
        },
    )
    assert created.status_code == 201
    changed = await acme.get("/api/v1/dashboard/summary", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    before = {(r["currency"], r["direction"]): r for r in first.json()["cleared"]}
    after = {(r["currency"], r["direction"]): r for r in changed.json()["cleared"]}
    assert after["EUR", "credit"]["count"] == before["EUR", "credit"]["count"] + 1
    assert after["EUR", "credit"]["amount_cents"] == before["EUR", "credit"]["amount_cents"] + 1234
    # another organization's dashboard was not touched
    assert (
        await globex.get("/api/v1/dashboard/summary", headers={"If-None-Match": other})
    ).status_code == 304


async def test_categories_and_drilldown_pages_add_up(login: Login) -> None:
    client = await login("analyst@acme.test")
    months = (await client.get("/api/v1/dashboard/summary")).json()["months"]
    month = max(m["month"] for m in months)
    items = (
        await client.get("/api/v1/dashboard/categories", params={"from": month, "to": month})
    ).json()["items"]
    busiest = max(items, key=lambda r: r["count"])
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"month": month, "direction": busiest["direction"], "limit": 7}
        if cursor:
            params["cursor"] = cursor
        got = await client.get(
            f"/api/v1/dashboard/categories/{busiest['category']}/transactions", params=params
        )
        assert got.status_code == 200, got.text
        seen += [t["id"] for t in got.json()["items"]]
        cursor = got.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == busiest["count"]
    everything = (await client.get("/api/v1/dashboard/categories")).json()["items"]
    assert sum(r["count"] for r in everything) >= sum(r["count"] for r in items)
    assert (
        await client.get(
            "/api/v1/dashboard/categories", params={"from": "2026-05", "to": "2026-01"}
        )
    ).status_code == 400
    assert (
        await client.get("/api/v1/dashboard/categories", params={"from": "2026-13"})
    ).status_code == 422


async def test_case_dashboard_equals_the_case_ledger(login: Login, casebook_app: FastAPI) -> None:
    db = casebook_app.state.services.db
    acme, globex = await login("analyst@acme.test"), await login("analyst@globex.test")
    case_id = (await acme.get("/api/v1/cases", params={"limit": 1})).json()["items"][0]["id"]
    body = (await acme.get(f"/api/v1/cases/{case_id}/dashboard")).json()
    got = {
        (r["category"], r["direction"]): (r["count"], r["amount_cents"]) for r in body["categories"]
    }
    assert got == await ledger(db, T.case_id == case_id, by=(T.category, T.direction))
    async with db.reader() as s:
        first = await s.scalar(select(func.min(T.posted_on)).where(T.case_id == case_id))
    assert min(r["first_posted_on"] for r in body["totals"]) == first.isoformat()
    assert (await globex.get(f"/api/v1/cases/{case_id}/dashboard")).status_code == 404
