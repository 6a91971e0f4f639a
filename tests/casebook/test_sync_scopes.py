"""casebook's ``my-cases`` sync scope over HTTP (``GET /v1/sync/scopes/{name}``), on SQLite
and PostgreSQL: bound to the caller (their assigned open cases, those cases' subjects and
transactions, the cases' pages to prefetch), in priority order; conditional (ETag/304, a
new version when an assignment changes); another organization's caller gets their own
binding, and replaying someone else's scope params reaches none of their rows (the shape's
tenant scope is ANDed by ``/v1/shape``); hostile names are a 4xx envelope. The Python
client (``lockstep.client.ScopeSync``) syncs it in priority order."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from casebook.models import Case, CaseStatus, Subject, Transaction, User
from casebook.seed import DEMO_PASSWORD
from lockstep import Database
from lockstep.client import Client, ScopeSync

from .conftest import Login

OPEN = [CaseStatus.OPEN, CaseStatus.UNDER_REVIEW]


async def user_id(db: Database, email: str) -> int:
    async with db.reader() as session:
        return int(await session.scalar(select(User.id).where(User.email == email)) or 0)


async def assigned(db: Database, email: str) -> list[int]:
    """The caller's open cases, most urgent first (what the scope must bind)."""
    uid = await user_id(db, email)
    async with db.reader() as session:
        rows = await session.scalars(
            select(Case.id)
            .where(Case.assignee_id == uid, Case.status.in_(OPEN))
            .order_by(Case.priority, Case.id)
        )
        return list(rows)


async def shape_rows(client: httpx.AsyncClient, params: dict[str, Any]) -> dict[str, Any]:
    """A shape's snapshot through ``GET /v1/shape``, as the real clients page through it."""
    query: dict[str, Any] = {k: v for k, v in params.items() if k != "params"}
    for number, value in enumerate(params.get("params", []), start=1):
        query[f"params[{number}]"] = value
    rows: dict[str, Any] = {}
    offset, handle = "-1", None
    for _ in range(100):
        sent = {**query, "offset": offset, **({"handle": handle} if handle else {})}
        response = await client.get("/v1/shape", params=sent)
        assert response.status_code == 200, response.text
        offset, handle = response.headers["electric-offset"], response.headers["electric-handle"]
        for message in response.json():
            if "key" in message:
                rows[message["key"]] = message["value"]
        if "electric-up-to-date" in response.headers:
            return rows
    raise AssertionError("the shape never got up to date")


async def test_my_cases_is_bound_to_the_caller_in_priority_order(
    login: Login, casebook_app: FastAPI
) -> None:
    db: Database = casebook_app.state.services.db
    acme = await login("analyst@acme.test")
    mine = await assigned(db, "analyst@acme.test")
    assert mine, "the seed assigns open cases to the analyst"
    response = await acme.get("/v1/sync/scopes/my-cases")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["vary"] == "Authorization"
    scope = response.json()
    assert [(s["name"], s["priority"]) for s in scope["shapes"]] == [
        ("cases", 0),
        ("subjects", 1),
        ("transactions", 2),
    ]
    assert scope["prefetch"] == [f"/api/v1/cases/{i}" for i in mine]
    cases, subjects, transactions = [await shape_rows(acme, s["params"]) for s in scope["shapes"]]
    assert sorted(int(r["id"]) for r in cases.values()) == sorted(mine)
    async with db.reader() as session:
        want_subjects = set(
            await session.scalars(select(Subject.id).where(Subject.case_id.in_(mine)))
        )
        want_transactions = set(
            await session.scalars(select(Transaction.id).where(Transaction.case_id.in_(mine)))
        )
    assert {int(r["id"]) for r in subjects.values()} == want_subjects
    assert {int(r["id"]) for r in transactions.values()} == want_transactions
    assert want_transactions, "the scope's last shape has rows to sync"
    for path in scope["prefetch"]:
        assert (await acme.get(path)).status_code == 200

    # Conditional; a new assignment is a new version.
    etag = response.headers["etag"]
    again = await acme.get("/v1/sync/scopes/my-cases", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag
    async with db.writer() as session:
        await session.execute(update(Case).where(Case.id == mine[0]).values(assignee_id=None))
    changed = await acme.get("/v1/sync/scopes/my-cases", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["version"] != scope["version"]
    assert changed.json()["prefetch"] == [f"/api/v1/cases/{i}" for i in mine[1:]]


async def test_a_scope_never_widens_access(login: Login, casebook_app: FastAPI) -> None:
    db: Database = casebook_app.state.services.db
    acme = await login("analyst@acme.test")
    globex = await login("analyst@globex.test")
    theirs = (await acme.get("/v1/sync/scopes/my-cases")).json()
    ours = (await globex.get("/v1/sync/scopes/my-cases")).json()
    globex_id = await user_id(db, "analyst@globex.test")
    assert ours["shapes"][0]["params"]["params"][0] == str(globex_id)
    assert ours["prefetch"] == [
        f"/api/v1/cases/{i}" for i in await assigned(db, "analyst@globex.test")
    ]
    # Replaying acme's bound params (its user and case ids) with globex's token: nothing.
    for item in theirs["shapes"]:
        assert await shape_rows(globex, item["params"]) == {}
    # A where widened by hand is still ANDed with the caller's organization.
    widened = {"table": "cases", "where": "id > $1", "params": ["0"]}
    rows = await shape_rows(globex, widened)
    async with db.reader() as session:
        acme_ids = set(await session.scalars(select(Case.id).where(Case.organization_id == 1)))
    assert rows
    assert not acme_ids & {int(r["id"]) for r in rows.values()}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_refusals_are_envelopes(login: Login, anonymous: httpx.AsyncClient) -> None:
    acme = await login("analyst@acme.test")
    unauthenticated = await anonymous.get("/v1/sync/scopes/my-cases")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "unauthenticated"
    for name, status in [
        ("nope", 404),
        ("MY-CASES", 404),
        ("my-cases%2F..", 404),
        ("..%2Fmy-cases", 404),
        ("my%20cases", 404),
        ("%E2%80%AEmy-cases", 404),
        ("my-cases%00", 400),
        ("x" * 65, 422),
        ("x" * 5000, 422),
    ]:
        response = await acme.get(f"/v1/sync/scopes/{name}")
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert set(error) >= {"code", "message", "request_id", "details"}
        assert "my-cases" not in error["message"]
        assert "x" * 20 not in error["message"]
    same = await acme.get("/v1/sync/scopes/nope")
    assert same.json()["error"]["message"] == "no such sync scope"


async def test_the_python_client_syncs_the_scope_in_priority_order(
    casebook_app: FastAPI,
) -> None:
    db: Database = casebook_app.state.services.db
    transport = httpx.ASGITransport(app=casebook_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://casebook.test") as http:
        token = (
            await http.post(
                "/api/v1/auth/token",
                data={"username": "analyst@acme.test", "password": DEMO_PASSWORD},
            )
        ).json()["access_token"]
    async with Client("http://casebook.test", token=lambda: token, transport=transport) as client:
        sync = ScopeSync(client, "my-cases")
        steps = [step async for step in sync.run()]
    mine = await assigned(db, "analyst@acme.test")
    assert [(s.stage, s.name) for s in steps] == [
        ("shape", "cases"),
        ("shape", "subjects"),
        ("shape", "transactions"),
        *[("prefetch", f"/api/v1/cases/{i}") for i in mine],
    ]
    assert [s.done for s in steps] == list(range(1, len(steps) + 1))
    assert {s.total for s in steps} == {3 + len(mine)}
    assert all(s.status == 200 for s in steps if s.stage == "prefetch")
    assert sorted(int(r["id"]) for r in sync.shapes["cases"].rows.values()) == sorted(mine)
    assert steps[2].rows == len(sync.shapes["transactions"].rows) > 0
