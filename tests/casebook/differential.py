"""casebook's inputs to lockstep's differential cache harness: callers, real values, writes.

Shared by the bounded run in ``make test`` (tests/casebook/test_differential.py) and the long
run of ``make fuzz``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from casebook.models import (
    Account,
    AdjudicationItem,
    Case,
    ConsentRecord,
    Subject,
    Transaction,
    User,
)
from casebook.seed import CATEGORIES, COUNTERPARTIES
from lockstep.testing.differential import Caller, DifferentialReport, check_cached_routes

Login = Callable[[str], Awaitable[httpx.AsyncClient]]

CALLERS = ["analyst@acme.test", "reviewer@acme.test", "analyst@globex.test", "admin@globex.test"]
WRITERS = ["analyst@acme.test", "analyst@globex.test"]
ADMINS = ["admin@acme.test", "admin@globex.test"]
MISSING_ID = 987_654


async def run(
    app: FastAPI, login: Login, *, steps: int, seed: int, write_ratio: float = 0.25
) -> DifferentialReport:
    """The harness over every cached casebook route, with writes by analysts of both tenants."""
    callers = []
    for email in CALLERS:
        client = await login(email)
        callers.append(Caller(email, {"Authorization": client.headers["Authorization"]}))
    writers = [await login(email) for email in WRITERS]
    admins = [await login(email) for email in ADMINS]
    db = app.state.services.db

    async def values() -> Mapping[str, Sequence[Any]]:
        async with db.reader() as session:
            cases = list(await session.scalars(select(Case.id)))
            subjects = list(await session.scalars(select(Subject.id).limit(40)))
            users = list(await session.scalars(select(User.id)))
            items = list(await session.scalars(select(AdjudicationItem.id).limit(40)))
            accounts = list(await session.scalars(select(Account.id).limit(40)))
            consents = list(await session.scalars(select(ConsentRecord.id).limit(40)))
            months = {
                d.strftime("%Y-%m")
                for d in await session.scalars(
                    select(Transaction.posted_on)
                    .group_by(Transaction.posted_on)
                    .order_by(Transaction.posted_on.desc())
                    .limit(90)
                )
            }
            top = await session.scalar(select(func.max(Transaction.posted_on)))
        dates = [top.isoformat()] if top else []
        return {
            "case_id": [*cases, MISSING_ID],
            "subject_id": [*subjects, MISSING_ID],
            "user_id": [*users, MISSING_ID],
            "item_id": [*items, MISSING_ID],
            "account_id": [*accounts, MISSING_ID],
            "consent_id": [*consents, MISSING_ID],
            "name": [*COUNTERPARTIES[:3], "", "nobody"],
            "as_of": ["2025-01-01", dt.date.today().isoformat()],
            "category": [*CATEGORIES[:4], "no-such-category"],
            "month": sorted(months)[-6:],
            "from": [*sorted(months)[-4:], *dates],
            "to": [*sorted(months)[-2:], *dates],
            "limit": [1, 3, 50],
            "fields": ["id,title", "id,category,amount", "id"],
            "q": ["a", "fraud"],
        }

    async def case_of(rng: random.Random, client: httpx.AsyncClient) -> int | None:
        page = (await client.get("/api/v1/cases?limit=50&fields=id")).json()
        ids = [item["id"] for item in page.get("items", [])]
        return rng.choice(ids) if ids else None

    async def rename_a_case(rng: random.Random) -> str:
        client = rng.choice(writers)
        case_id = await case_of(rng, client)
        title = f"case renamed {rng.randrange(10_000)}"
        response = await client.patch(f"/api/v1/cases/{case_id}", json={"title": title})
        return f"case {case_id} -> {response.status_code}"

    async def add_a_transaction(rng: random.Random) -> str:
        client = rng.choice(writers)
        case_id = await case_of(rng, client)
        body = {
            "posted_on": (dt.date.today() - dt.timedelta(days=rng.randrange(120))).isoformat(),
            "amount": f"{rng.randrange(1, 5000)}.{rng.randrange(100):02d}",
            "direction": rng.choice(["debit", "credit"]),
            "category": rng.choice(CATEGORIES[:4]),
            "flagged": rng.random() < 0.2,
        }
        response = await client.post(f"/api/v1/cases/{case_id}/transactions", json=body)
        return f"case {case_id} {body['category']} -> {response.status_code}"

    async def a_transaction(rng: random.Random, client: httpx.AsyncClient) -> int | None:
        case_id = await case_of(rng, client)
        page = (await client.get(f"/api/v1/cases/{case_id}/transactions?limit=20")).json()
        ids = [item["id"] for item in page.get("items", [])]
        return rng.choice(ids) if ids else None

    async def recategorize_a_transaction(rng: random.Random) -> str:
        client = rng.choice(writers)
        txn = await a_transaction(rng, client)
        if txn is None:
            return "no transaction"
        body = {"category": rng.choice(CATEGORIES[:4]), "flagged": rng.random() < 0.3}
        response = await client.patch(f"/api/v1/transactions/{txn}", json=body)
        return f"transaction {txn} {body} -> {response.status_code}"

    async def delete_a_transaction(rng: random.Random) -> str:
        client = rng.choice(writers)
        txn = await a_transaction(rng, client)
        if txn is None:
            return "no transaction"
        response = await client.delete(f"/api/v1/transactions/{txn}")
        return f"transaction {txn} deleted -> {response.status_code}"

    async def add_a_subject(rng: random.Random) -> str:
        client = rng.choice(writers)
        case_id = await case_of(rng, client)
        body = {"kind": "person", "name": f"Subject {rng.randrange(1000)}"}
        response = await client.post(f"/api/v1/cases/{case_id}/subjects", json=body)
        return f"subject in case {case_id} -> {response.status_code}"

    async def change_the_organization(rng: random.Random) -> str:
        client = rng.choice(admins)
        body = {"report_footer": f"footer {rng.randrange(1000)}"}
        response = await client.patch("/api/v1/organization", json=body)
        return f"organization {body} -> {response.status_code}"

    async def rename_a_counterparty(rng: random.Random) -> str:
        client = rng.choice(writers)
        txn = await a_transaction(rng, client)
        if txn is None:
            return "no transaction"
        body = {"counterparty": rng.choice(COUNTERPARTIES[:4])}
        response = await client.patch(f"/api/v1/transactions/{txn}", json=body)
        return f"transaction {txn} {body} -> {response.status_code}"

    async def a_subject(rng: random.Random, client: httpx.AsyncClient) -> int | None:
        case_id = await case_of(rng, client)
        page = (await client.get(f"/api/v1/cases/{case_id}/subjects")).json()
        ids = [item["id"] for item in page.get("items", [])]
        return rng.choice(ids) if ids else None

    async def add_or_edit_an_account(rng: random.Random) -> str:
        client = rng.choice(writers)
        subject = await a_subject(rng, client)
        if subject is None:
            return "no subject"
        page = (await client.get(f"/api/v1/subjects/{subject}")).json()
        accounts = (await client.get(f"/api/v1/cases/{page['case_id']}/accounts")).json()
        mine = [a["id"] for a in accounts.get("items", []) if a["subject_id"] == subject]
        if mine and rng.random() < 0.5:
            body = {"institution": f"Bank {rng.randrange(100)}"}
            response = await client.patch(f"/api/v1/accounts/{mine[0]}", json=body)
            return f"account {mine[0]} edited -> {response.status_code}"
        body = {"institution": "Bank", "identifier": f"{rng.randrange(10**8):08d}"}
        response = await client.post(f"/api/v1/subjects/{subject}/accounts", json=body)
        return f"account for subject {subject} -> {response.status_code}"

    async def record_or_revoke_consent(rng: random.Random) -> str:
        client = rng.choice(writers)
        subject = await a_subject(rng, client)
        if subject is None:
            return "no subject"
        listed = (await client.get(f"/api/v1/subjects/{subject}/consents")).json()
        open_ = [c["id"] for c in listed.get("items", []) if c["revoked_on"] is None]
        if open_ and rng.random() < 0.5:
            response = await client.post(f"/api/v1/consents/{open_[0]}/revoke", json={})
            return f"consent {open_[0]} revoked -> {response.status_code}"
        granted = dt.date.today() - dt.timedelta(days=rng.randrange(400))
        body = {"purpose": "investigation", "granted_on": granted.isoformat()}
        response = await client.post(f"/api/v1/subjects/{subject}/consents", json=body)
        return f"consent for subject {subject} -> {response.status_code}"

    return await check_cached_routes(
        app,
        callers=callers,
        values=values,
        writes=[
            rename_a_case,
            add_a_transaction,
            recategorize_a_transaction,
            delete_a_transaction,
            add_a_subject,
            change_the_organization,
            rename_a_counterparty,
            add_or_edit_an_account,
            record_or_revoke_consent,
        ],
        steps=steps,
        seed=seed,
        write_ratio=write_ratio,
    )
