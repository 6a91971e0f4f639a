"""Accounts, consent records and counterparties (issue #15), through the API on SQLite and
PostgreSQL: hostile input, tenancy, roles, preconditions, and figures recomputed by hand."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from casebook.models import Account, Subject, Transaction

Login = Callable[[str], Awaitable[httpx.AsyncClient]]
GOOD_IBAN = "DE89 3704 0044 0532 0130 00"
BAD_IBAN = "DE88 3704 0044 0532 0130 00"  # one check digit off


async def new_subject(client: httpx.AsyncClient) -> tuple[int, int]:
    case = await client.post("/api/v1/cases", json={"reference": "ACC-1", "title": "accounts"})
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    subject = await client.post(
        f"/api/v1/cases/{case_id}/subjects", json={"kind": "company", "name": "Holder Ltd"}
    )
    assert subject.status_code == 201, subject.text
    return case_id, subject.json()["id"]


async def test_account_lifecycle_balance_and_ledger(login: Login) -> None:
    client = await login("analyst@acme.test")
    case_id, subject_id = await new_subject(client)
    created = await client.post(
        f"/api/v1/subjects/{subject_id}/accounts",
        json={"institution": "Commerzbank", "identifier": GOOD_IBAN, "currency": "EUR"},
    )
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["number_masked"] == "****3000"
    assert account["case_id"] == case_id
    assert account["subject_id"] == subject_id
    assert created.headers["location"] == f"/api/v1/accounts/{account['id']}"
    listed = (await client.get(f"/api/v1/cases/{case_id}/accounts")).json()
    assert [a["id"] for a in listed["items"]] == [account["id"]]

    # Entries on the account, through the app's one write path (the ORM), then the balance.
    app: FastAPI = client._transport.app  # type: ignore[attr-defined]
    entries = [
        (dt.date(2026, 1, 5), "credit", 100_00, "EUR"),
        (dt.date(2026, 1, 20), "debit", 30_00, "EUR"),
        (dt.date(2026, 3, 2), "debit", 50_00, "EUR"),
        (dt.date(2026, 3, 3), "credit", 9_99, "USD"),  # another currency: counted apart
    ]
    async with app.state.services.db.writer() as session:
        for posted_on, direction, cents, currency in entries:
            session.add(
                Transaction(
                    organization_id=1,
                    case_id=case_id,
                    subject_id=subject_id,
                    account_id=account["id"],
                    posted_on=posted_on,
                    amount_cents=cents,
                    currency=currency,
                    direction=direction,
                    category="wire",
                    counterparty="Acme Bank",
                )
            )
    balance = await client.get(f"/api/v1/accounts/{account['id']}/balance")
    assert balance.status_code == 200, balance.text
    body = balance.json()
    assert body["other_currency_count"] == 1
    assert [(m["month"], m["closing_cents"]) for m in body["months"]] == [
        ("2026-01", 70_00),
        ("2026-02", 70_00),
        ("2026-03", 20_00),
    ]
    ranged = (
        await client.get(f"/api/v1/accounts/{account['id']}/balance?from=2026-02&to=2026-04")
    ).json()
    assert ranged["opening_cents"] == 70_00
    assert [m["closing_cents"] for m in ranged["months"]] == [70_00, 20_00, 20_00]
    backwards = await client.get(
        f"/api/v1/accounts/{account['id']}/balance?from=2026-04&to=2026-01"
    )
    assert backwards.status_code == 400
    assert backwards.json()["error"]["code"] == "bad_request"
    # Cached and conditional; a new entry changes it.
    etag = balance.headers["etag"]
    again = await client.get(
        f"/api/v1/accounts/{account['id']}/balance", headers={"If-None-Match": etag}
    )
    assert again.status_code == 304
    ledger = (await client.get(f"/api/v1/accounts/{account['id']}/transactions")).json()
    assert [t["posted_on"] for t in ledger["items"]] == [
        "2026-03-03", "2026-03-02", "2026-01-20", "2026-01-05",
    ]  # fmt: skip
    txn = ledger["items"][0]["id"]
    assert (await client.delete(f"/api/v1/transactions/{txn}")).status_code == 204
    fresh = await client.get(
        f"/api/v1/accounts/{account['id']}/balance", headers={"If-None-Match": etag}
    )
    assert fresh.status_code == 200
    assert fresh.json()["other_currency_count"] == 0
    # The case ledger filtered by account is the same list.
    by_case = (
        await client.get(f"/api/v1/cases/{case_id}/transactions?account_id={account['id']}")
    ).json()
    assert len(by_case["items"]) == 3

    # Edit with If-Match; a stale validator is 412 and changes nothing.
    current = await client.get(f"/api/v1/accounts/{account['id']}")
    edited = await client.patch(
        f"/api/v1/accounts/{account['id']}",
        json={"institution": "Deutsche Bank", "identifier": "12345678"},
        headers={"If-Match": current.headers["etag"]},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["number_masked"] == "****5678"
    assert edited.json()["version"] == account["version"] + 1
    stale = await client.patch(
        f"/api/v1/accounts/{account['id']}",
        json={"institution": "Stale"},
        headers={"If-Match": current.headers["etag"]},
    )
    assert stale.status_code == 412
    assert (await client.get(f"/api/v1/accounts/{account['id']}")).json()["institution"] == (
        "Deutsche Bank"
    )
    # Delete: the entries stay in the ledger without an account.
    assert (await client.delete(f"/api/v1/accounts/{account['id']}")).status_code == 204
    assert (await client.get(f"/api/v1/accounts/{account['id']}")).status_code == 404
    left = (await client.get(f"/api/v1/cases/{case_id}/transactions")).json()["items"]
    assert len(left) == 3


async def test_hostile_account_input_is_422_and_stores_nothing(login: Login) -> None:
    client = await login("analyst@acme.test")
    case_id, subject_id = await new_subject(client)
    url = f"/api/v1/subjects/{subject_id}/accounts"
    for body in (
        {"institution": "B", "identifier": BAD_IBAN},
        {"institution": "B", "identifier": "GB82 WEST 1234 5698 7654 33"},  # GB82...32 is valid
        {"institution": "B", "identifier": "12345678", "currency": "eur"},
        {"institution": "B", "identifier": "12345678", "currency": "EURO"},
        {"institution": "B", "identifier": "12<script>"},
        {"institution": "B", "identifier": "123\u0000456"},
        {"institution": "", "identifier": "12345678"},
        {"institution": "B", "identifier": "12345678", "owner": 1},
    ):
        response = await client.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    valid = await client.post(
        url, json={"institution": "B", "identifier": "GB82 WEST 1234 5698 7654 32"}
    )
    assert valid.status_code == 201, valid.text
    bad_edit = await client.patch(
        f"/api/v1/accounts/{valid.json()['id']}", json={"identifier": BAD_IBAN}
    )
    assert bad_edit.status_code == 422
    listed = (await client.get(f"/api/v1/cases/{case_id}/accounts")).json()["items"]
    assert [a["number_masked"] for a in listed] == ["****5432"]


async def test_roles_and_tenancy(login: Login, casebook_app: FastAPI) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    foreign = await login("analyst@globex.test")
    case_id, subject_id = await new_subject(analyst)
    account = (
        await analyst.post(
            f"/api/v1/subjects/{subject_id}/accounts",
            json={"institution": "B", "identifier": "12345678"},
        )
    ).json()
    consent = (
        await analyst.post(
            f"/api/v1/subjects/{subject_id}/consents",
            json={"purpose": "investigation", "granted_on": "2026-01-01"},
        )
    ).json()
    # Reviewers read but never write.
    assert (await reviewer.get(f"/api/v1/accounts/{account['id']}")).status_code == 200
    for method, url, body in (
        (
            "POST",
            f"/api/v1/subjects/{subject_id}/accounts",
            {"institution": "B", "identifier": "1234"},
        ),
        ("PATCH", f"/api/v1/accounts/{account['id']}", {"institution": "X"}),
        ("DELETE", f"/api/v1/accounts/{account['id']}", None),
        (
            "POST",
            f"/api/v1/subjects/{subject_id}/consents",
            {"purpose": "p", "granted_on": "2026-01-01"},
        ),
        ("POST", f"/api/v1/consents/{consent['id']}/revoke", {}),
    ):
        response = await reviewer.request(method, url, json=body)
        assert response.status_code == 403, (method, url, response.text)
    # Another organization's ids answer like missing ones.
    for url in (
        f"/api/v1/accounts/{account['id']}",
        f"/api/v1/accounts/{account['id']}/balance",
        f"/api/v1/accounts/{account['id']}/transactions",
        f"/api/v1/cases/{case_id}/accounts",
        f"/api/v1/cases/{case_id}/consent",
        f"/api/v1/cases/{case_id}/counterparties",
        f"/api/v1/cases/{case_id}/counterparty?name=x",
        f"/api/v1/subjects/{subject_id}/consents",
        f"/api/v1/consents/{consent['id']}",
    ):
        response = await foreign.get(url)
        assert response.status_code == 404, url
    for method, url, body in (
        ("PATCH", f"/api/v1/accounts/{account['id']}", {"institution": "X"}),
        ("DELETE", f"/api/v1/accounts/{account['id']}", None),
        (
            "POST",
            f"/api/v1/subjects/{subject_id}/accounts",
            {"institution": "B", "identifier": "1234"},
        ),
        (
            "POST",
            f"/api/v1/subjects/{subject_id}/consents",
            {"purpose": "p", "granted_on": "2026-01-01"},
        ),
        ("POST", f"/api/v1/consents/{consent['id']}/revoke", {}),
    ):
        response = await foreign.request(method, url, json=body)
        assert response.status_code == 404, (method, url, response.text)
    async with casebook_app.state.services.db.reader() as session:
        kept = await session.get(Account, account["id"])
        assert kept is not None
        assert kept.institution == "B"


async def test_consent_records_and_status(login: Login) -> None:
    client = await login("analyst@acme.test")
    case_id, subject_id = await new_subject(client)
    url = f"/api/v1/subjects/{subject_id}/consents"
    summary = (await client.get(f"/api/v1/cases/{case_id}/consent")).json()
    assert summary["items"] == [
        {"subject_id": subject_id, "name": "Holder Ltd", "status": "none", "until": None}
    ]
    for body in (
        {"purpose": "kyc", "granted_on": "2026-02-01", "expires_on": "2026-01-01"},
        {"purpose": "kyc", "granted_on": "2026-02-01", "expires_on": "2026-02-01"},
        {"purpose": "kyc", "granted_on": "2026-02-30"},
        {"purpose": "kyc", "granted_on": "20260201"},
        {"purpose": "", "granted_on": "2026-02-01"},
        {"purpose": "kyc", "granted_on": "2026-02-01", "legal_basis": "because"},
    ):
        response = await client.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
    today = dt.datetime.now(dt.UTC).date()
    granted = today - dt.timedelta(days=10)
    created = await client.post(
        url,
        json={
            "purpose": "investigation",
            "legal_basis": "legal_obligation",
            "granted_on": granted.isoformat(),
            "document_ref": "DOC-7",
        },
    )
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["recorded_by_id"] is not None
    assert record["revoked_on"] is None
    listed = (await client.get(url)).json()
    assert listed["status"] == "valid"
    assert [r["id"] for r in listed["items"]] == [record["id"]]
    before = await client.get(f"{url}?as_of={(granted - dt.timedelta(days=1)).isoformat()}")
    assert before.json()["status"] == "none"
    summary = await client.get(f"/api/v1/cases/{case_id}/consent")
    assert summary.json()["items"][0]["status"] == "valid"

    # Revoke: If-Match against the record; stale → 412; twice → 409; bad days → 422.
    current = await client.get(f"/api/v1/consents/{record['id']}")
    revoke = f"/api/v1/consents/{record['id']}/revoke"
    early = await client.post(
        revoke, json={"revoked_on": (granted - dt.timedelta(days=1)).isoformat()}
    )
    assert early.status_code == 422
    future = await client.post(
        revoke, json={"revoked_on": (today + dt.timedelta(days=1)).isoformat()}
    )
    assert future.status_code == 422
    done = await client.post(revoke, json={}, headers={"If-Match": current.headers["etag"]})
    assert done.status_code == 200, done.text
    assert done.json()["revoked_on"] == today.isoformat()
    # Revoked already: 409, whatever the validator says.
    again = await client.post(revoke, json={}, headers={"If-Match": current.headers["etag"]})
    assert again.status_code == 409
    after = await client.get(
        f"/api/v1/cases/{case_id}/consent", headers={"If-None-Match": summary.headers["etag"]}
    )
    assert after.status_code == 200
    assert after.json()["items"][0] == {
        "subject_id": subject_id,
        "name": "Holder Ltd",
        "status": "revoked",
        "until": today.isoformat(),
    }
    # A validator that is not this record's current one: 412, the record stays as it was.
    other = (await client.post(url, json={"purpose": "kyc", "granted_on": "2026-01-01"})).json()
    other_url = f"/api/v1/consents/{other['id']}"
    stale = await client.post(
        f"{other_url}/revoke", json={}, headers={"If-Match": current.headers["etag"]}
    )
    assert stale.status_code == 412
    assert (await client.get(other_url)).json()["revoked_on"] is None
    # No hard delete: there is no such route.
    assert (await client.delete(f"/api/v1/consents/{record['id']}")).status_code == 405


async def test_counterparties_equal_a_recomputation(login: Login, casebook_app: FastAPI) -> None:
    client = await login("analyst@acme.test")
    async with casebook_app.state.services.db.reader() as session:
        case_id = await session.scalar(
            select(Transaction.case_id).where(Transaction.organization_id == 1).limit(1)
        )
        rows = (
            await session.execute(
                select(
                    Transaction.counterparty, Transaction.currency, Transaction.direction,
                    Transaction.amount_cents, Transaction.posted_on,
                ).where(Transaction.case_id == case_id)
            )
        ).all()  # fmt: skip
    expected: dict[str, dict[tuple[str, str], list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    months: dict[str, dict[tuple[str, str, str], list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    for name, currency, direction, cents, posted_on in rows:
        for entry in (
            expected[name][(currency, direction.value)],
            months[name][(posted_on.strftime("%Y-%m"), currency, direction.value)],
        ):
            entry[0] += 1
            entry[1] += cents
    # Every page, two names at a time.
    found: dict[str, Any] = {}
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = (await client.get(f"/api/v1/cases/{case_id}/counterparties{query}")).json()
        for item in body["items"]:
            assert item["name"] not in found
            found[item["name"]] = item
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert list(found) == sorted(expected)
    for name, item in found.items():
        got = {
            (t["currency"], t["direction"]): [t["count"], t["amount_cents"]] for t in item["totals"]
        }
        assert got == expected[name], name
        assert item["count"] == sum(n for n, _ in expected[name].values())
    name = next(iter(expected))
    detail = await client.get(f"/api/v1/cases/{case_id}/counterparty", params={"name": name})
    assert detail.status_code == 200, detail.text
    got_months = {
        (m["month"], m["currency"], m["direction"]): [m["count"], m["amount_cents"]]
        for m in detail.json()["months"]
    }
    assert got_months == months[name]
    ledger = (
        await client.get(
            f"/api/v1/cases/{case_id}/transactions", params={"counterparty": name, "limit": 200}
        )
    ).json()
    assert len(ledger["items"]) == detail.json()["count"]
    # Any text is a name: slashes, dots, quotes, unicode; unknown → zero totals, not 404.
    for odd in ("../../etc/passwd", "a/b?c=d#e", 'Zürich "AG" %2F', ""):
        response = await client.get(f"/api/v1/cases/{case_id}/counterparty", params={"name": odd})
        assert response.status_code == 200, (odd, response.text)
        assert response.json()["name"] == odd
    nul = await client.get(f"/api/v1/cases/{case_id}/counterparty", params={"name": "a\x00b"})
    assert nul.status_code in (400, 422)
    assert "error" in nul.json()
    assert (await client.get(f"/api/v1/cases/{case_id}/counterparty")).status_code == 422


async def test_counterparty_and_account_reads_use_their_indexes(
    casebook_app: FastAPI,
) -> None:
    """The plans name the covering indexes (0012_consent), not a scan of the ledger."""
    db = casebook_app.state.services.db
    t = Transaction
    from sqlalchemy import func

    queries = {
        "ix_transactions_org_case_counterparty": select(
            t.counterparty, t.direction, func.sum(t.amount_cents)
        )
        .where(t.organization_id == 1, t.case_id == 1, t.counterparty == "x")
        .group_by(t.counterparty, t.direction),
        "ix_transactions_account_posted": select(t.posted_on, func.sum(t.amount_cents))
        .where(t.account_id == 1)
        .group_by(t.posted_on),
    }
    async with db.reader() as session:
        backend = session.bind.dialect.name
        for index, stmt in queries.items():
            sql = str(stmt.compile(session.bind, compile_kwargs={"literal_binds": True}))
            if backend == "sqlite":
                plan = " ".join(
                    str(r)
                    for r in (await session.execute(_text(f"EXPLAIN QUERY PLAN {sql}"))).all()
                )
            else:
                # Statistics as a running database has them (autovacuum), and no seq scan:
                # 600 seeded rows would fit one page.
                await session.execute(_text("ANALYZE transactions"))
                await session.execute(_text("SET LOCAL enable_seqscan = off"))
                plan = " ".join(
                    str(r) for r in (await session.execute(_text(f"EXPLAIN {sql}"))).all()
                )
            assert index in plan, plan
        assert await session.scalar(select(func.count()).select_from(Subject)) > 0


def _text(sql: str) -> Any:
    from sqlalchemy import text

    return text(sql)
