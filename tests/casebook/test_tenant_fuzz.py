"""Tenant isolation over every route: another organization's ids answer exactly what ids
that do not exist answer (issue #13).

For every operation in the OpenAPI document, every parameter that names a row (path ids,
id filters), every kind of row the other organization has (cases, subjects, transactions,
imports, reports, jobs, users), as each of the caller's roles, with and without the owner's
validators (``If-None-Match`` / ``If-Match`` carrying the owner's ETag): the answer to the
foreign id must equal the answer to a missing id — status, body and headers, the id's own
digits and the request id aside — and a path id must be a 404 (or a 403 the caller's role
gets whatever the id). An id filter's ETag names its URL, so it differs between two ids; it
must not depend on the foreign row either: the owner changes every probed row and each such
answer keeps its ETag. Afterwards the owner's rows are as the probes found them. On SQLite
and PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from .conftest import Login

MISSING = 2_000_000_000
# Headers that differ between any two requests, whatever they ask for (X-Cache and Age tell
# whether this caller asked for the URL before: its own history, not the row).
VOLATILE = {
    "date",
    "x-request-id",
    "content-length",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-cache",
    "age",
}
KINDS = {
    "case_id": "cases",
    "subject_id": "subjects",
    "txn_id": "transactions",
    "import_id": "imports",
    "report_id": "reports",
    "job_id": "jobs",
    "assignee_id": "users",
    "user_id": "users",
    "item_id": "adjudication_items",
    "account_id": "accounts",
    "consent_id": "consent_records",
}
BODIES: dict[str, dict[str, Any]] = {
    "update_case": {"json": {"title": "taken over"}},
    "update_subject": {"json": {"name": "taken over"}},
    "update_transaction": {"json": {"category": "taken over"}},
    "create_subject": {"json": {"kind": "person", "name": "planted"}},
    "create_transaction": {
        "json": {"posted_on": "2026-01-01", "amount": "1", "direction": "debit", "category": "x"}
    },
    "upload": {"files": {"file": ("s.csv", b"date,amount,direction,category\n")}},
    "flag_transaction": {"json": {"reason": "planted"}},
    "decide_adjudication_item": {"json": {"outcome": "cleared", "reason": "taken over"}},
    "update_user": {"json": {"full_name": "taken over"}},
    "create_account": {"json": {"institution": "planted", "identifier": "12345678"}},
    "update_account": {"json": {"institution": "taken over"}},
    "create_consent": {"json": {"purpose": "planted", "granted_on": "2026-01-01"}},
    "revoke_consent": {"json": {"revoked_on": "2026-01-02"}},
}
QUERIES = {"category_transactions": {"month": "2026-01"}, "get_counterparty": {"name": "x"}}


async def owner_rows(acme: httpx.AsyncClient, admin: httpx.AsyncClient) -> dict[str, list[int]]:
    """Ids of the owner's rows of every kind (an import and a report made for the test)."""
    cases = [c["id"] for c in (await acme.get("/api/v1/cases?limit=3")).json()["items"]]
    subjects = [s["id"] for s in (await acme.get("/api/v1/subjects?limit=3")).json()["items"]]
    txns = (await acme.get(f"/api/v1/cases/{cases[0]}/transactions?limit=3")).json()["items"]
    statement = b"date,amount,direction,category\n2026-01-05,12.50,debit,fees\n"
    upload = await acme.post(
        f"/api/v1/cases/{cases[0]}/imports", files={"file": ("s.csv", statement)}
    )
    assert upload.status_code in (201, 202), upload.text
    report = await acme.post(f"/api/v1/cases/{cases[0]}/reports")
    assert report.status_code == 202, report.text
    me = (await acme.get("/api/v1/auth/me")).json()
    accounts = (await acme.get(f"/api/v1/cases/{cases[0]}/accounts")).json()["items"]
    consents = (await acme.get(f"/api/v1/subjects/{subjects[0]}/consents")).json()["items"]
    assert accounts
    assert consents
    jobs = [j["id"] for j in (await admin.get("/api/v1/jobs")).json()["items"]]
    assert jobs
    return {
        "cases": cases,
        "subjects": subjects,
        "transactions": [t["id"] for t in txns],
        "imports": [upload.json()["id"]],
        "reports": [report.json()["id"]],
        "jobs": jobs[:2],
        "users": [me["id"]],
        "accounts": [a["id"] for a in accounts[:2]],
        "consent_records": [c["id"] for c in consents[:1]],
        "adjudication_items": [
            i["id"] for i in (await acme.get("/api/v1/adjudication?limit=2")).json()["items"]
        ],
    }


def comparable(response: httpx.Response, value: int) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers with the id's digits, the request id and the ETag (a digest
    of the URL, which holds the id) blanked."""
    body = re.sub(rf"\b{value}\b", "<id>", response.text)
    body = re.sub(r'"request_id":"[^"]*"', '"request_id":""', body)
    headers = {k: v for k, v in response.headers.items() if k not in VOLATILE}
    if "etag" in headers:
        headers["etag"] = "<url digest>"
    return response.status_code, body, headers


async def test_foreign_ids_answer_like_missing_ones_on_every_route(login: Login) -> None:
    acme = await login("analyst@acme.test")
    acme_admin = await login("admin@acme.test")
    rows = await owner_rows(acme, acme_admin)
    document = (await acme.get("/openapi.json")).json()
    # The owner's representations are cached (and validators known) before anyone probes.
    etags: dict[str, str] = {}
    before: dict[str, str] = {}
    for kind, path in (
        ("cases", "/api/v1/cases/{}"),
        ("subjects", "/api/v1/subjects/{}"),
        ("transactions", "/api/v1/transactions/{}"),
    ):
        for row in rows[kind]:
            response = await acme.get(path.format(row))
            etags[kind] = response.headers["etag"]
            before[path.format(row)] = response.text

    callers = {
        "analyst": await login("analyst@globex.test"),
        "admin": await login("admin@globex.test"),
    }
    # A filter is probed on the caller's own case (a path id that is not the one probed).
    own = {
        role: (await client.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
        for role, client in callers.items()
    }
    probed = 0
    validated: list[tuple[httpx.AsyncClient, str, dict[str, Any], str]] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                kind = KINDS.get(parameter["name"])
                if kind is None:
                    continue
                for role, client in callers.items():
                    for foreign in rows[kind]:
                        for validator in (
                            {},
                            {"If-None-Match": etags.get(kind, '"x"')},
                            {"If-Match": etags.get(kind, '"x"')},
                        ):
                            answers = []
                            for value in (foreign, MISSING):
                                response = await send(
                                    client,
                                    own[role],
                                    method,
                                    path,
                                    operation,
                                    parameter,
                                    value,
                                    validator,
                                )
                                answers.append(comparable(response, value))
                                if value == foreign and "etag" in response.headers:
                                    request = (client, str(response.url), validator)
                                    validated.append((*request, response.headers["etag"]))
                            where = (
                                f"{role} {method.upper()} {path} "
                                f"{parameter['name']}={foreign} {validator}"
                            )
                            assert answers[0] == answers[1], where
                            if parameter["in"] == "path":
                                assert answers[0][0] in (404, 403), where
                            probed += 1
    assert probed > 200
    # The owner changes every row the probes named: no probe's answer changes with them.
    for row in rows["cases"]:
        assert (await acme.patch(f"/api/v1/cases/{row}", json={"priority": 5})).is_success
    for row in rows["subjects"]:
        assert (await acme.patch(f"/api/v1/subjects/{row}", json={"risk_level": 5})).is_success
    for row in rows["transactions"]:
        assert (await acme.patch(f"/api/v1/transactions/{row}", json={"flagged": True})).is_success
    for client, url, validator, etag in validated:
        assert (await client.get(url, headers=validator)).headers.get("etag") == etag, url
    # Nothing the probes did reached the owner's rows.
    for path, text in before.items():
        after = await acme.get(path)
        assert after.status_code == 200, path
        expected, found = httpx.Response(200, text=text).json(), after.json()
        for changed in ("priority", "risk_level", "flagged", "version", "updated_at"):
            expected.pop(changed, None)
            found.pop(changed, None)
        assert found == expected, path


async def send(
    client: httpx.AsyncClient,
    own_case: int,
    method: str,
    path: str,
    operation: dict[str, Any],
    parameter: dict[str, Any],
    value: int,
    headers: dict[str, str],
) -> httpx.Response:
    params: dict[str, Any] = dict(QUERIES.get(operation["operationId"], {}))
    url = path
    for other in operation.get("parameters", []):
        if other["in"] == "path":
            filler: object = value if other is parameter else "fees"  # a drill-down's category
            if other is not parameter and other["name"] == "case_id":
                filler = own_case
            url = url.replace("{" + other["name"] + "}", str(filler))
    if parameter["in"] == "query":
        params[parameter["name"]] = value
    extra = BODIES.get(operation["operationId"], {})
    return await client.request(method.upper(), url, params=params, headers=headers, **extra)
