"""The household budget: monthly figures, provisions and tax rates from the rollup, memoized
on it, exact after every kind of write, 304 while nothing changed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from budget.figures import Cell, months_before, provisions, summarize, tax_report
from budget.models import Outbox, Statement
from budget.rollups import AGGREGATES
from budget.statements import render
from fastapi import FastAPI
from sqlalchemy import func, select

from lockstep import count_statements, unbounded_integers


async def household(client: httpx.AsyncClient) -> tuple[int, int, int]:
    made = await client.post("/households", json={"name": "Doe", "members": ["Ann", "Bob"]})
    assert made.status_code == 201
    body = made.json()
    return body["id"], body["members"][0]["id"], body["members"][1]["id"]


def entry(member: int, day: str, category: str, kind: str, cents: int, **kw: Any) -> dict[str, Any]:
    return {"member_id": member, "posted_on": day, "category": category, "expense_type": kind,
            "amount_cents": cents, **kw}  # fmt: skip


async def test_month_summary_and_exclusion(budget: httpx.AsyncClient) -> None:
    h, ann, bob = await household(budget)
    added = await budget.post(
        f"/households/{h}/entries",
        json=[
            entry(ann, "2026-03-01", "salary", "income", 500_000),
            entry(ann, "2026-03-01", "payroll tax", "tax", 120_000),
            entry(bob, "2026-03-03", "rent", "fixed", 150_000),
            entry(bob, "2026-03-09", "groceries", "variable", 30_000),
            entry(ann, "2026-03-20", "groceries", "variable", 20_000),
            entry(ann, "2026-03-21", "gadget", "variable", 99_000, excluded=True),
            entry(ann, "2026-04-01", "groceries", "variable", 1_000),
        ],
    )
    assert added.status_code == 201
    url = f"/households/{h}/summary?month=2026-03"
    first = await budget.get(url)
    body = first.json()
    assert (body["income_cents"], body["tax_cents"], body["spending_cents"]) == (
        500_000,
        120_000,
        200_000,
    )
    assert body["net_cents"] == 180_000
    assert {a["name"]: a["amount_cents"] for a in body["by_category"]} == {
        "groceries": 50_000,
        "rent": 150_000,
    }
    assert {a["name"]: a["amount_cents"] for a in body["by_member"]} == {
        str(ann): 20_000,
        str(bob): 180_000,
    }
    etag = first.headers["etag"]
    assert (await budget.get(url, headers={"If-None-Match": etag})).status_code == 304

    gadget = added.json()["ids"][5]
    assert (await budget.patch(f"/entries/{gadget}", json={"excluded": False})).status_code == 200
    changed = await budget.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["spending_cents"] == 299_000
    rent = added.json()["ids"][2]
    assert (await budget.delete(f"/entries/{rent}")).status_code == 204
    assert (await budget.get(url)).json()["spending_cents"] == 149_000


async def test_provisions_and_tax_are_memoized_on_the_rollup(budget: httpx.AsyncClient) -> None:
    h, ann, bob = await household(budget)
    other, other_member, _ = await household(budget)
    lines = [
        entry(ann, "2025-06-15", "car", "irregular", 120_000),
        entry(bob, "2025-11-02", "insurance", "irregular", 60_000),
    ]
    for month in range(1, 13):
        day = f"2025-{month:02d}-25"
        lines += [
            entry(ann, day, "salary", "income", 400_000),
            entry(ann, day, "tax", "tax", 100_000),
            entry(bob, day, "salary", "income", 200_000),
            entry(bob, day, "tax", "tax", 30_000),
        ]
    assert (await budget.post(f"/households/{h}/entries", json=lines)).status_code == 201

    app: FastAPI = budget._transport.app  # type: ignore[attr-defined]
    db, figures = app.state.db, app.state.figures
    found = await figures.provisions(h, "2026-01")
    assert {p.category: (p.trailing_cents, p.monthly_cents) for p in found.items} == {
        "car": (120_000, 10_000),
        "insurance": (60_000, 5_000),
    }
    assert found.total_monthly_cents == 15_000
    with count_statements(db.reader_engine, db.writer_engine) as counter:
        again = await figures.provisions(h, "2026-01")
    assert counter.count == 0  # memoized
    assert again == found

    report = (await budget.get(f"/households/{h}/tax", params={"year": 2025})).json()
    assert report["household"]["rate"] == round(1_560_000 / 7_200_000, 4)
    assert [m["rate"] for m in report["members"]] == [0.25, 0.15]

    # Another household's write leaves this household's memo alone ...
    await budget.post(
        f"/households/{other}/entries",
        json=[entry(other_member, "2025-07-01", "boat", "irregular", 5)],
    )
    with count_statements(db.reader_engine, db.writer_engine) as counter:
        await figures.provisions(h, "2026-01")
    assert counter.count == 0
    # ... its own write recomputes it.
    await budget.post(
        f"/households/{h}/entries", json=[entry(bob, "2025-12-24", "car", "irregular", 24_000)]
    )
    updated = await figures.provisions(h, "2026-01")
    assert {p.category: p.monthly_cents for p in updated.items}["car"] == 12_000
    for verification in await AGGREGATES.verify(db):
        assert verification.ok, [d.describe() for d in verification.discrepancies]


def test_figures_are_plain_functions() -> None:
    cells = [
        Cell("2026-01", "salary", "income", 1, 1, 100),
        Cell("2026-01", "tax", "tax", 1, 1, 30),
        Cell("2026-01", "food", "variable", 2, 3, 50),
        Cell("2025-02", "roof", "irregular", 1, 1, 1200),
    ]
    month = summarize(7, "2026-01", cells)
    assert (month.net_cents, month.spending_cents) == (20, 50)
    assert months_before("2026-01", 2) == ["2025-11", "2025-12"]
    assert provisions(7, "2026-01", cells).total_monthly_cents == 100
    assert tax_report(7, 2026, cells).household.rate == 0.3


async def test_an_edit_with_a_stale_if_match_is_412(budget: httpx.AsyncClient) -> None:
    h, ann, _ = await household(budget)
    added = await budget.post(
        f"/households/{h}/entries", json=[entry(ann, "2026-03-02", "rent", "fixed", 90_000)]
    )
    url = f"/entries/{added.json()['ids'][0]}"
    read = await budget.get(url)
    etag = read.headers["etag"]
    assert read.json()["amount_cents"] == 90_000
    assert (await budget.get(url, headers={"If-None-Match": etag})).status_code == 304

    edited = await budget.patch(url, json={"amount_cents": 95_000}, headers={"If-Match": etag})
    assert edited.status_code == 200
    # The same validator again: someone changed the entry since it was read.
    stale = await budget.patch(url, json={"amount_cents": 1}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert (await budget.get(url)).json()["amount_cents"] == 95_000
    gone = await budget.delete(url, headers={"If-Match": etag})
    assert gone.status_code == 412
    fresh = (await budget.get(url)).headers["etag"]
    assert (await budget.delete(url, headers={"If-Match": fresh})).status_code == 204
    assert (await budget.get(url)).status_code == 404


async def test_a_statement_is_mailed_through_the_outbox_once(budget: httpx.AsyncClient) -> None:
    h, ann, _ = await household(budget)
    await budget.post(
        f"/households/{h}/entries",
        json=[
            entry(ann, "2026-03-01", "salary", "income", 300_000),
            entry(ann, "2026-03-05", "rent", "fixed", 120_000),
        ],
    )
    asked = await budget.post(
        f"/households/{h}/statements", json={"month": "2026-03", "email": "ann@example.test"}
    )
    assert asked.status_code == 202
    statement, job_id = asked.json()["id"], asked.json()["job_id"]
    app: FastAPI = budget._transport.app  # type: ignore[attr-defined]
    async with asyncio.timeout(30):  # the worker runs in the app's lifespan
        assert (await app.state.jobs.result(job_id))["outbox_id"] > 0
    waited = await budget.post(
        f"/households/{h}/statements",
        json={"month": "2026-02", "email": "bob@example.test"},
        headers={"Prefer": "wait=30"},
    )
    assert (waited.status_code, waited.json()["status"]) == (201, "sent")
    shown = (await budget.get(f"/statements/{statement}")).json()
    assert shown["status"] == "sent"
    assert shown["email"]["to"] == "ann@example.test"
    assert shown["email"]["subject"] == "Your budget for 2026-03"
    assert "Net          1,800.00" in shown["email"]["body"]
    async with app.state.db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(Outbox)) == 2

    # The job is enqueued by the request's transaction: no household, no statement, no job.
    missing = await budget.post(
        "/households/987654/statements", json={"month": "2026-03", "email": "a@b.test"}
    )
    assert missing.status_code == 404
    async with app.state.db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(Statement)) == 2
    bad = await budget.post(f"/households/{h}/statements", json={"month": "2026-3", "email": "x"})
    assert bad.status_code == 422


async def test_entries_sync_as_an_electric_shape(budget: httpx.AsyncClient) -> None:
    h, ann, _ = await household(budget)
    other, other_member, _ = await household(budget)
    await budget.post(
        f"/households/{h}/entries", json=[entry(ann, "2026-03-02", "rent", "fixed", 90_000)]
    )
    await budget.post(
        f"/households/{other}/entries",
        json=[entry(other_member, "2026-03-02", "rent", "fixed", 1)],
    )
    params = {"table": "entries", "offset": "-1", "where": f"household_id = {h}"}
    snapshot = await budget.get("/v1/shape", params=params)
    assert snapshot.status_code == 200
    rows = [m["value"] for m in snapshot.json() if "value" in m]
    assert [(r["category"], r["amount_cents"]) for r in rows] == [("rent", "90000")]
    assert snapshot.json()[-1]["headers"]["control"] == "up-to-date"
    handle, offset = snapshot.headers["electric-handle"], snapshot.headers["electric-offset"]

    added = await budget.post(
        f"/households/{h}/entries", json=[entry(ann, "2026-03-09", "food", "variable", 4_200)]
    )
    changes = await budget.get("/v1/shape", params={**params, "offset": offset, "handle": handle})
    inserted = [m for m in changes.json() if m.get("headers", {}).get("operation") == "insert"]
    assert [m["value"]["category"] for m in inserted] == ["food"]
    assert inserted[0]["headers"]["txids"] == [int(added.headers["lockstep-txid"])]


def test_the_statement_email_is_a_plain_function() -> None:
    cells = [Cell("2026-01", "salary", "income", 1, 1, 250_000)]
    subject, body = render(summarize(7, "2026-01", cells))
    assert subject == "Your budget for 2026-01"
    assert body.splitlines()[0] == "Income       2,500.00"


async def test_bad_input_is_a_4xx_in_the_error_envelope(budget: httpx.AsyncClient) -> None:
    h, ann, _ = await household(budget)
    made = await budget.post(
        f"/households/{h}/entries", json=[entry(ann, "2026-01-02", "x", "fixed", 5)]
    )
    assert made.json()["ids"] == [1]
    huge = 10**25
    for method, url, body in [
        ("GET", f"/entries/{huge}", None),
        ("GET", f"/households/{huge}/summary?month=2026-01", None),
        ("GET", "/households/1/summary?month=2026-13", None),
        ("PATCH", "/entries/1", {"amount_cents": huge}),
        ("PATCH", "/entries/1", {"excluded": None}),
        ("POST", "/households/1/entries", [entry(huge, "2026-01-01", "x", "fixed", 1)]),
        ("POST", "/households/1/statements", {"month": "2026-01", "email": "nobody"}),
        ("GET", "/statements/0", None),
    ]:
        answer = await budget.request(method, url, json=body)
        assert 400 <= answer.status_code < 500, (method, url, answer.text)
        assert answer.json()["error"]["code"] in ("validation_error", "not_found")
    document = (await budget.get("/openapi.json")).json()
    assert unbounded_integers(document) == []
