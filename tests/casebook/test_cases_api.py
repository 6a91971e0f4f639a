"""Cases, subjects and transactions CRUD; runs on SQLite and PostgreSQL alike."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable

import httpx
from fastapi import FastAPI

from lockstep import count_statements

Login = Callable[[str], Awaitable[httpx.AsyncClient]]


async def test_case_lifecycle(login: Login) -> None:
    client = await login("analyst@acme.test")
    created = await client.post(
        "/api/v1/cases",
        json={
            "reference": "CB-NEW-1",
            "title": "Shell company loop",
            "priority": 2,
            "assignee_id": 1,
        },
    )
    assert created.status_code == 201, created.text
    case = created.json()
    assert created.headers["location"] == f"/api/v1/cases/{case['id']}"
    assert case["status"] == "open"
    assert case["assignee"]["email"] == "analyst@acme.test"
    assert case["subjects"] == []

    patched = await client.patch(
        f"/api/v1/cases/{case['id']}", json={"status": "closed", "title": "Shell loop"}
    )
    assert patched.status_code == 200
    assert patched.json()["status"] == "closed"
    assert patched.json()["closed_on"] is not None
    assert patched.json()["version"] == case["version"] + 1

    fetched = (await client.get(f"/api/v1/cases/{case['id']}")).json()
    assert fetched["title"] == "Shell loop"


async def test_duplicate_reference_is_409_and_keeps_the_first(login: Login) -> None:
    client = await login("analyst@acme.test")
    first = await client.post("/api/v1/cases", json={"reference": "DUP-1", "title": "first"})
    assert first.status_code == 201
    second = await client.post("/api/v1/cases", json={"reference": "DUP-1", "title": "second"})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "conflict"
    kept = await client.get(f"/api/v1/cases/{first.json()['id']}")
    assert kept.json()["title"] == "first"


async def test_bad_input_gets_the_envelope_and_stores_nothing(login: Login) -> None:
    client = await login("analyst@acme.test")
    before = (await client.get("/api/v1/cases?limit=200&fields=id")).json()["items"]
    bad = await client.post("/api/v1/cases", json={"reference": "", "title": "x", "extra": 1})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "validation_error"
    assert {tuple(d["loc"]) for d in error["details"]} >= {("body", "reference"), ("body", "extra")}
    foreign_assignee = await client.post(
        "/api/v1/cases", json={"reference": "X-1", "title": "x", "assignee_id": 4}
    )
    assert foreign_assignee.status_code == 422
    after = (await client.get("/api/v1/cases?limit=200&fields=id")).json()["items"]
    assert after == before


async def test_subject_and_transaction_crud(login: Login) -> None:
    client = await login("analyst@acme.test")
    case_id = (await client.post("/api/v1/cases", json={"reference": "T-1", "title": "t"})).json()[
        "id"
    ]
    subject = await client.post(
        f"/api/v1/cases/{case_id}/subjects",
        json={"kind": "company", "name": "Acme Shell", "country": "CH", "identifier": "CHE-1"},
    )
    assert subject.status_code == 201, subject.text
    subject_id = subject.json()["id"]
    assert subject.json()["identifier"] == "CHE-1"
    renamed = await client.patch(
        f"/api/v1/subjects/{subject_id}", json={"identifier": "CHE-123.456.789"}
    )
    assert renamed.json()["identifier"] == "CHE-123.456.789"
    too_long = await client.patch(f"/api/v1/subjects/{subject_id}", json={"identifier": "x" * 65})
    assert too_long.status_code == 422
    txn = await client.post(
        f"/api/v1/cases/{case_id}/transactions",
        json={
            "posted_on": "2026-03-04",
            "amount": "1234.50",
            "direction": "debit",
            "category": "wire",
            "counterparty": "Bank",
            "subject_id": subject_id,
        },
    )
    assert txn.status_code == 201, txn.text
    body = txn.json()
    assert body["amount"] == "1234.50"
    assert body["amount_cents"] == 123450
    too_precise = await client.post(
        f"/api/v1/cases/{case_id}/transactions",
        json={"posted_on": "2026-03-04", "amount": "1.005", "direction": "debit", "category": "x"},
    )
    assert too_precise.status_code == 422
    patched = await client.patch(f"/api/v1/transactions/{body['id']}", json={"flagged": True})
    assert patched.json()["flagged"] is True
    listed = (await client.get(f"/api/v1/cases/{case_id}/transactions")).json()
    assert [t["id"] for t in listed["items"]] == [body["id"]]
    case = (await client.get(f"/api/v1/cases/{case_id}")).json()
    assert [s["name"] for s in case["subjects"]] == ["Acme Shell"]
    assert (await client.delete(f"/api/v1/transactions/{body['id']}")).status_code == 204
    assert (await client.get(f"/api/v1/transactions/{body['id']}")).status_code == 404
    assert (await client.delete(f"/api/v1/subjects/{subject_id}")).status_code == 204


async def test_transaction_filters(login: Login) -> None:
    client = await login("analyst@acme.test")
    everything = (await client.get("/api/v1/cases/1/transactions?limit=200")).json()["items"]
    assert everything
    category = everything[0]["category"]
    only = (await client.get(f"/api/v1/cases/1/transactions?limit=200&category={category}")).json()[
        "items"
    ]
    assert only
    assert all(t["category"] == category for t in only)
    assert {t["id"] for t in only} == {t["id"] for t in everything if t["category"] == category}
    ranged = await client.get(
        "/api/v1/cases/1/transactions?limit=200&from=2026-01-01&to=2025-01-01"
    )
    assert ranged.status_code == 400


async def test_case_filters(login: Login) -> None:
    client = await login("analyst@acme.test")
    everything = (await client.get("/api/v1/cases?limit=200")).json()["items"]
    for priority in (1, 5):
        chosen = (await client.get(f"/api/v1/cases?limit=200&priority={priority}")).json()
        assert [c["id"] for c in chosen["items"]] == [
            c["id"] for c in everything if c["priority"] == priority
        ]
    both = await client.get("/api/v1/cases?limit=200&priority=2&status=open&assignee_id=1")
    assert [c["id"] for c in both.json()["items"]] == [
        c["id"]
        for c in everything
        if (c["priority"], c["status"], c["assignee_id"]) == (2, "open", 1)
    ]
    assert (await client.get("/api/v1/cases?priority=6")).status_code == 422


async def test_sparse_fieldsets_and_unknown_fields(login: Login) -> None:
    client = await login("analyst@acme.test")
    sparse = (await client.get("/api/v1/cases?fields=reference,status")).json()["items"]
    assert sparse
    assert set(sparse[0]) == {"id", "reference", "status"}
    # The OpenAPI document lists the fields (a pattern), so an unknown one is a 422 there.
    unknown = await client.get("/api/v1/cases?fields=reference,password_hash")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["loc"] == ["query", "fields"]


async def test_bad_cursor_is_400(login: Login) -> None:
    client = await login("analyst@acme.test")
    for cursor in ("WzFd", "WyJ4IiwgMV0"):
        response = await client.get(f"/api/v1/cases/1/transactions?cursor={cursor}")
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["error"]["code"] == "bad_request"
    # Not even the cursor alphabet: the declared pattern refuses it.
    response = await client.get("/api/v1/cases/1/transactions?cursor=garbage!!")
    assert response.status_code == 422


async def test_listing_cases_is_not_n_plus_1(login: Login, casebook_app: FastAPI) -> None:
    client = await login("analyst@acme.test")
    db = casebook_app.state.services.db
    # The caller's standing is read once, then memoized (casebook.standing): not per request.
    with count_statements(db.reader_engine, db.writer_engine) as first:
        assert (await client.get("/api/v1/auth/me")).status_code == 200
    with count_statements(db.reader_engine, db.writer_engine) as again:
        assert (await client.get("/api/v1/auth/me")).status_code == 200
    assert again.count == first.count - 1, first.statements
    with count_statements(db.reader_engine, db.writer_engine) as few:
        small = await client.get("/api/v1/cases?limit=2")
    with count_statements(db.reader_engine, db.writer_engine) as many:
        large = await client.get("/api/v1/cases?limit=200")
    assert len(large.json()["items"]) > len(small.json()["items"]) >= 2
    # One query for the cases, one for all their assignees, however many cases.
    assert many.count == few.count == 2, many.statements
    with count_statements(db.reader_engine, db.writer_engine) as detail:
        await client.get("/api/v1/cases/1")
    assert detail.count == 3, detail.statements  # case, assignee, subjects


async def test_the_ledger_export_applies_the_filters_and_disarms_formulas(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    case = (await analyst.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    planted = await analyst.post(
        f"/api/v1/cases/{case}/transactions",
        json={
            "posted_on": "2026-02-03",
            "amount": "12.50",
            "direction": "debit",
            "category": "=HYPERLINK(1)",
            "counterparty": "+41 ACME",
        },
    )
    assert planted.status_code == 201, planted.text
    listed = (
        await analyst.get(f"/api/v1/cases/{case}/transactions?direction=debit&limit=200")
    ).json()["items"]
    export = await analyst.get(f"/api/v1/cases/{case}/transactions.csv?direction=debit")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [int(r["id"]) for r in rows] == [t["id"] for t in listed]  # same rows, same order
    assert {r["direction"] for r in rows} == {"debit"}
    mine = next(r for r in rows if int(r["id"]) == planted.json()["id"])
    assert (mine["category"], mine["counterparty"], mine["amount"]) == (
        "'=HYPERLINK(1)",
        "'+41 ACME",
        "12.50",
    )
    other = await login("analyst@globex.test")
    assert (await other.get(f"/api/v1/cases/{case}/transactions.csv")).status_code == 404


async def test_cases_filter_by_their_opening_day(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    for reference, day in (
        ("OPN-1", "2024-01-31"),
        ("OPN-2", "2024-02-01"),
        ("OPN-3", "2024-02-29"),
    ):
        body = {"reference": reference, "title": "t", "opened_on": day}
        assert (await analyst.post("/api/v1/cases", json=body)).status_code == 201
    window = await analyst.get("/api/v1/cases?opened_from=2024-02-01&opened_to=2024-02-29")
    assert window.status_code == 200, window.text
    assert [c["reference"] for c in window.json()["items"]] == ["OPN-3", "OPN-2"]
    after = (await analyst.get("/api/v1/cases?opened_from=2024-02-29")).json()["items"]
    assert "OPN-3" in {c["reference"] for c in after}
    assert all(c["opened_on"] >= "2024-02-29" for c in after)
    backwards = await analyst.get("/api/v1/cases?opened_from=2024-03-01&opened_to=2024-02-01")
    assert backwards.status_code == 400
    assert "opened_from" in backwards.json()["error"]["message"]
    assert (await analyst.get("/api/v1/cases?opened_to=2024-02-30")).status_code == 422
