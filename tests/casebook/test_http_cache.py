"""ETags, 304s, preconditions and exact invalidation on casebook's cached routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from fastapi import FastAPI

from lockstep import count_statements

Login = Callable[[str], Awaitable[httpx.AsyncClient]]


async def test_etag_round_trip_answers_304_without_touching_the_database(
    login: Login, casebook_app: FastAPI
) -> None:
    client = await login("analyst@acme.test")
    first = await client.get("/api/v1/cases/1")
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["cache-control"] == "private, no-cache"
    assert "Authorization" in first.headers["vary"]
    db = casebook_app.state.services.db
    with count_statements(db.reader_engine, db.writer_engine) as counter:
        again = await client.get("/api/v1/cases/1", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert counter.count == 0
    hit = await client.get("/api/v1/cases/1")
    assert (hit.headers["x-cache"], hit.json()) == ("HIT", first.json())


async def test_a_write_changes_exactly_the_etags_it_should(login: Login) -> None:
    client = await login("analyst@acme.test")
    case_1 = (await client.get("/api/v1/cases/1")).headers["etag"]
    case_2 = (await client.get("/api/v1/cases/2")).headers["etag"]
    ledger_2 = (await client.get("/api/v1/cases/2/transactions")).headers["etag"]
    patched = await client.patch("/api/v1/cases/1", json={"title": "renamed"})
    assert patched.status_code == 200
    after_1 = await client.get("/api/v1/cases/1", headers={"If-None-Match": case_1})
    assert after_1.status_code == 200
    assert after_1.json()["title"] == "renamed"
    # Case 2 and its ledger were not touched: still 304 (a write to case 1 never evicts case 2).
    assert (
        await client.get("/api/v1/cases/2", headers={"If-None-Match": case_2})
    ).status_code == 304
    assert (
        await client.get("/api/v1/cases/2/transactions", headers={"If-None-Match": ledger_2})
    ).status_code == 304
    # A new transaction in case 2 changes its ledger but not case 1.
    created = await client.post(
        "/api/v1/cases/2/transactions",
        json={"posted_on": "2026-05-01", "amount": "10.00", "direction": "debit", "category": "x"},
    )
    assert created.status_code == 201
    ledger = await client.get("/api/v1/cases/2/transactions", headers={"If-None-Match": ledger_2})
    assert ledger.status_code == 200
    assert created.json()["id"] in [t["id"] for t in ledger.json()["items"]]


async def test_writes_return_a_token_and_reads_honor_it(login: Login) -> None:
    client = await login("analyst@acme.test")
    response = await client.patch("/api/v1/cases/1", json={"priority": 1})
    token = response.headers["lockstep-token"]
    assert token.isdigit()
    fresh = await client.get("/api/v1/cases/1", headers={"Lockstep-Token": token})
    assert fresh.json()["priority"] == 1
    reads = await client.get("/api/v1/cases/1")
    assert "lockstep-token" not in reads.headers


async def test_another_tenants_etag_never_yields_304(login: Login) -> None:
    acme = await login("analyst@acme.test")
    globex = await login("analyst@globex.test")
    etag = (await acme.get("/api/v1/cases/1")).headers["etag"]
    probe = await globex.get("/api/v1/cases/1", headers={"If-None-Match": etag})
    assert probe.status_code == 404
    star = await globex.get("/api/v1/cases/1", headers={"If-None-Match": "*"})
    assert star.status_code in (304, 404)  # '*' reveals nothing: globex's own view is a 404
    own = (await globex.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    globex_etag = (await globex.get(f"/api/v1/cases/{own}")).headers["etag"]
    assert globex_etag != etag


async def test_if_match_guards_lost_updates(login: Login) -> None:
    alice = await login("analyst@acme.test")
    bob = await login("admin@acme.test")
    etag = (await alice.get("/api/v1/cases/3")).headers["etag"]
    ok = await bob.patch("/api/v1/cases/3", json={"title": "bob"}, headers={"If-Match": etag})
    assert ok.status_code == 200
    late = await alice.patch("/api/v1/cases/3", json={"title": "alice"}, headers={"If-Match": etag})
    assert late.status_code == 412
    assert late.json()["error"]["code"] == "precondition_failed"
    assert (await alice.get("/api/v1/cases/3")).json()["title"] == "bob"
    current = (await alice.get("/api/v1/cases/3")).headers["etag"]
    retried = await alice.patch(
        "/api/v1/cases/3", json={"title": "alice"}, headers={"If-Match": current}
    )
    assert retried.status_code == 200


async def test_request_cache_control(login: Login) -> None:
    client = await login("analyst@acme.test")
    await client.get("/api/v1/cases/4")
    revalidated = await client.get("/api/v1/cases/4", headers={"Cache-Control": "no-cache"})
    assert revalidated.headers["x-cache"] == "MISS"
    assert (await client.get("/api/v1/cases/4")).headers["x-cache"] == "HIT"
    await client.patch("/api/v1/cases/4", json={"priority": 2})
    not_stored = await client.get("/api/v1/cases/4", headers={"Cache-Control": "no-store"})
    assert not_stored.headers["x-cache"] == "MISS"
    assert (await client.get("/api/v1/cases/4")).headers["x-cache"] == "MISS"


async def test_errors_are_not_cached(login: Login) -> None:
    client = await login("analyst@acme.test")
    assert (await client.get("/api/v1/cases/999999")).status_code == 404
    created = await client.post("/api/v1/cases", json={"reference": "NEW-404", "title": "t"})
    new_id = created.json()["id"]
    assert (await client.get(f"/api/v1/cases/{new_id}")).status_code == 200
    missing = await client.get("/api/v1/cases/999999")
    assert missing.status_code == 404
    assert "etag" not in missing.headers


async def test_the_schema_revision_namespaces_every_key(casebook_app: FastAPI) -> None:
    """Requirement 20: a migration (new head revision) retires everything cached before it."""
    from casebook.services import MIGRATIONS
    from lockstep import head_revision

    namespace = casebook_app.state.services.lockstep.cache.namespace
    assert namespace == f"casebook:{head_revision(MIGRATIONS)}"


async def test_cached_answers_before_routing_still_authenticate(
    login: Login, casebook_app: FastAPI
) -> None:
    """Private answers served before routing need a valid token of the same organization."""
    import datetime as dt

    import jwt

    client = await login("analyst@acme.test")
    first = await client.get("/api/v1/cases/1")
    assert (await client.get("/api/v1/cases/1")).headers["x-cache"] == "HIT"
    db = casebook_app.state.services.db
    with count_statements(db.reader_engine, db.writer_engine) as counter:
        assert (await client.get("/api/v1/cases/1")).json() == first.json()
    assert counter.count == 0
    settings = casebook_app.state.services.settings
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    expired = jwt.encode(
        {"sub": "1", "org": 1, "role": "analyst", "typ": "access", "exp": past, "iat": past},
        settings.signing_key(),
        algorithm="HS256",
    )
    stale_token = await client.get(
        "/api/v1/cases/1", headers={"Authorization": f"Bearer {expired}"}
    )
    assert stale_token.status_code == 401
    forged = await client.get("/api/v1/cases/1", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401
    globex = await login("analyst@globex.test")
    assert (await globex.get("/api/v1/cases/1")).status_code == 404
