"""If-Match is a compare-and-set inside the write transaction, and conditionals are answered
only for a resource the caller may see (issue #12, items 2 and 3)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.util import await_only

import lockstep.runtime

from .conftest import Login

N = 5  # the writer pool's size: every writer holds a connection while it waits


async def _resources(client: httpx.AsyncClient) -> dict[str, str]:
    """A case, a subject and a transaction of the client's organization, by URL."""
    case = (await client.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    subject = (await client.get(f"/api/v1/cases/{case}/subjects")).json()["items"][0]["id"]
    txn = (await client.get(f"/api/v1/cases/{case}/transactions?limit=1")).json()["items"][0]
    return {
        "case": f"/api/v1/cases/{case}",
        "subject": f"/api/v1/subjects/{subject}",
        "transaction": f"/api/v1/transactions/{txn['id']}",
    }


PATCHES = {
    "case": lambda i: {"title": f"title {i}"},
    "subject": lambda i: {"name": f"name {i}"},
    "transaction": lambda i: {"description": f"description {i}"},
}


def _hold_writes_until_all_arrive(app: FastAPI, parties: int) -> Callable[[], None]:
    """PostgreSQL: every writer waits, before its first row lock (the write path's read of
    the row FOR UPDATE), until all ``parties`` writers have read the row — the worst
    interleaving: each one checked and read the same version."""
    barrier = asyncio.Barrier(parties)
    engine = app.state.services.db.writer_engine.sync_engine
    arrived: set[int] = set()

    def before(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if "FOR UPDATE" in sql.upper() and id(conn) not in arrived:
            arrived.add(id(conn))
            await_only(barrier.wait())

    event.listen(engine, "before_cursor_execute", before)
    return lambda: event.remove(engine, "before_cursor_execute", before)


@pytest.mark.parametrize("resource", ["case", "subject", "transaction"])
async def test_concurrent_writers_with_one_validator_exactly_one_wins(
    casebook_app: FastAPI, login: Login, resource: str
) -> None:
    client = await login("analyst@acme.test")
    url = (await _resources(client))[resource]
    etag = (await client.get(url)).headers["etag"]
    release = asyncio.Barrier(N)
    db = casebook_app.state.services.db
    undo = _hold_writes_until_all_arrive(casebook_app, N) if not db.is_sqlite else None

    async def write(i: int) -> httpx.Response:
        await release.wait()
        return await client.patch(url, json=PATCHES[resource](i), headers={"If-Match": etag})

    try:
        async with asyncio.timeout(60):
            responses = await asyncio.gather(*(write(i) for i in range(N)))
    finally:
        if undo is not None:
            undo()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * (N - 1), [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    now = (await client.get(url)).json()
    assert now == winner  # the one change that won is the one stored
    current = (await client.get(url)).headers["etag"]
    for loser in (r for r in responses if r.status_code == 412):
        assert loser.json()["error"]["details"]["etag"] == current


async def test_a_stale_validator_loses_to_an_earlier_write_without_one(login: Login) -> None:
    client = await login("analyst@acme.test")
    urls = await _resources(client)
    etag = (await client.get(urls["case"])).headers["etag"]
    assert (await client.patch(urls["case"], json={"priority": 2})).status_code == 200
    late = await client.patch(urls["case"], json={"priority": 5}, headers={"If-Match": etag})
    assert late.status_code == 412
    assert (await client.get(urls["case"])).json()["priority"] == 2
    # A delete too.
    subject_etag = (await client.get(urls["subject"])).headers["etag"]
    assert (await client.patch(urls["subject"], json={"risk_level": 4})).status_code == 200
    refused = await client.delete(urls["subject"], headers={"If-Match": subject_etag})
    assert refused.status_code == 412
    assert (await client.get(urls["subject"])).status_code == 200


async def test_if_match_on_a_route_without_a_validator_is_refused_not_ignored(
    login: Login,
) -> None:
    client = await login("analyst@acme.test")
    case = (await _resources(client))["case"]
    created = await client.post(
        f"{case}/subjects",
        json={"kind": "person", "name": "Nobody"},
        headers={"If-Match": '"anything"'},
    )
    assert created.status_code == 412
    assert created.json()["error"]["code"] == "precondition_failed"
    names = [s["name"] for s in (await client.get(f"{case}/subjects")).json()["items"]]
    assert "Nobody" not in names  # refused before it committed


# -- conditionals across tenants ---------------------------------------------------------------

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/v1/cases/{case_id}"): {"json": {"title": "x"}},
    ("PATCH", "/api/v1/subjects/{subject_id}"): {"json": {"name": "x"}},
    ("PATCH", "/api/v1/transactions/{txn_id}"): {"json": {"description": "x"}},
    ("POST", "/api/v1/cases/{case_id}/subjects"): {"json": {"kind": "person", "name": "x"}},
    ("POST", "/api/v1/cases/{case_id}/transactions"): {
        "json": {"posted_on": "2026-01-01", "amount": "1", "direction": "debit", "category": "x"}
    },
    ("POST", "/api/v1/transactions/{txn_id}/flag"): {"json": {"reason": "x"}},
    ("POST", "/api/v1/adjudication/{item_id}/decide"): {
        "json": {"outcome": "cleared", "reason": "x"}
    },
    ("POST", "/api/v1/cases/{case_id}/imports"): {
        "files": {"file": ("s.csv", b"date,amount\n2026-01-01,1\n", "text/csv")}
    },
    ("POST", "/api/v1/subjects/{subject_id}/accounts"): {
        "json": {"institution": "x", "identifier": "12345678"}
    },
    ("PATCH", "/api/v1/accounts/{account_id}"): {"json": {"institution": "x"}},
    ("POST", "/api/v1/subjects/{subject_id}/consents"): {
        "json": {"purpose": "x", "granted_on": "2026-01-01"}
    },
    ("POST", "/api/v1/consents/{consent_id}/revoke"): {"json": {}},
    ("POST", "/api/v1/cases/{case_id}/notes"): {"json": {"body": "x"}},
    ("PATCH", "/api/v1/notes/{note_id}"): {"json": {"body": "x"}},
    ("POST", "/api/v1/cases/{case_id}/evidence"): {"files": {"file": ("e.txt", b"x")}},
    ("GET", "/api/v1/cases/{case_id}/counterparty"): {"params": {"name": "x"}},
}


async def _acme_ids(acme: httpx.AsyncClient, admin: httpx.AsyncClient) -> dict[str, int]:
    case = (await acme.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    subject = (await acme.get(f"/api/v1/cases/{case}/subjects")).json()["items"][0]["id"]
    txn = (await acme.get(f"/api/v1/cases/{case}/transactions?limit=1")).json()["items"][0]["id"]
    report = (await acme.post(f"/api/v1/cases/{case}/reports")).json()
    upload = await acme.post(
        f"/api/v1/cases/{case}/imports",
        files={"file": ("a.csv", b"date,amount\n2026-01-01,-5.00\n", "text/csv")},
    )
    assert upload.status_code in (201, 202, 422), upload.text
    imports = (await acme.get(f"/api/v1/cases/{case}/imports")).json()["items"]
    item = (await acme.get("/api/v1/adjudication?limit=1")).json()["items"][0]["id"]
    account = (await acme.get(f"/api/v1/cases/{case}/accounts")).json()["items"][0]["id"]
    consent = (await acme.get(f"/api/v1/subjects/{subject}/consents")).json()["items"][0]["id"]
    note = (await acme.post(f"/api/v1/cases/{case}/notes", json={"body": "n"})).json()["id"]
    evidence = await acme.post(f"/api/v1/cases/{case}/evidence", files={"file": ("e", b"e")})
    return {
        "account_id": account,
        "consent_id": consent,
        "note_id": note,
        "evidence_id": evidence.json()["id"],
        "case_id": case,
        "item_id": item,
        "subject_id": subject,
        "txn_id": txn,
        "report_id": report["id"],
        "job_id": report["job_id"],
        "import_id": imports[0]["id"],
    }


async def test_conditionals_on_another_tenants_ids_are_the_404_of_a_missing_id(
    casebook_app: FastAPI, login: Login
) -> None:
    """Every route that takes an id, every method, every kind of validator: a caller of
    another organization gets exactly what a missing id gets."""
    acme = await login("analyst@acme.test")
    acme_admin = await login("admin@acme.test")
    ids = await _acme_ids(acme, acme_admin)
    etags = {}
    for path in ("/api/v1/cases/{case_id}", "/api/v1/subjects/{subject_id}"):
        url = path.format(**ids)
        etags[path] = (await acme.get(url)).headers["etag"]
    globex = await login("admin@globex.test")  # an admin: role checks never answer first
    validators = ["*", '"0123456789abcdef0123456789abcdef"', *etags.values()]
    checked = 0
    for route in fastapi.routing.iter_route_contexts(casebook_app.routes):
        path = route.path_format or ""
        names = [n for n in ids if "{" + n + "}" in path]
        if not names or not path.startswith("/api/"):
            continue
        for method in sorted(route.methods or ()):
            header = "If-None-Match" if method == "GET" else "If-Match"
            for validator in validators:
                for values in (ids, dict.fromkeys(ids, 987_654)):
                    url = path.format(**values)
                    kwargs = BODIES.get((method, path), {})
                    response = await globex.request(
                        method, url, headers={header: validator}, **kwargs
                    )
                    assert response.status_code == 404, (method, url, validator, response.text)
                    assert "etag" not in response.headers
                    assert response.json()["error"]["details"] is None
                    checked += 1
    assert checked > 100
    # And acme's rows are as they were.
    assert (await acme.get(f"/api/v1/cases/{ids['case_id']}")).headers["etag"] == etags[
        "/api/v1/cases/{case_id}"
    ]


async def test_a_writer_checking_between_anothers_commit_and_its_cache_bump_still_loses(
    casebook_app: FastAPI, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the in-transaction ANNOUNCE closes (PostgreSQL: writers commit
    concurrently): the winner is held right after its COMMIT, before its post-commit cache
    bump, until the other writer — which got the row lock at that COMMIT — has compared its
    If-Match. The stamps must already have moved."""
    db = casebook_app.state.services.db
    if db.is_sqlite:
        pytest.skip("SQLite has one writer: the next one starts after the bump")
    client = await login("analyst@acme.test")
    url = (await _resources(client))["case"]
    etag = (await client.get(url)).headers["etag"]
    compared = asyncio.Event()
    comparisons = 0
    original = lockstep.runtime.verify_if_match

    async def counting(session: Any) -> None:
        nonlocal comparisons
        try:
            await original(session)
        finally:
            comparisons += 1
            if comparisons == 2:
                compared.set()

    monkeypatch.setattr(lockstep.runtime, "verify_if_match", counting)
    held = False

    def after_commit(_session: Any) -> None:
        nonlocal held
        if not held:
            held = True
            await_only(compared.wait())  # committed, not yet bumped after commit

    event.listen(db.session_class, "after_commit", after_commit)
    undo = _hold_writes_until_all_arrive(casebook_app, 2)
    try:
        async with asyncio.timeout(60):
            responses = await asyncio.gather(
                *(
                    client.patch(url, json={"title": f"t{i}"}, headers={"If-Match": etag})
                    for i in range(2)
                )
            )
    finally:
        undo()
        event.remove(db.session_class, "after_commit", after_commit)
    assert sorted(r.status_code for r in responses) == [200, 412], [r.text for r in responses]
