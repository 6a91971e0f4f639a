"""Adjudication (issue #15): flagging, the queue, leases that two reviewers never share,
decisions under the four-eyes rule, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import event, insert, select, update
from sqlalchemy.util import await_only

from casebook.auth import hash_password
from casebook.models import AdjudicationItem, Case, Role, User
from casebook.seed import DEMO_PASSWORD
from lockstep.realtime.history import publications_table

from .conftest import Login

N = 5  # concurrent claimants (the writer pool's size)


async def _txn(client: httpx.AsyncClient, case: int | None = None) -> dict[str, Any]:
    """An unflagged transaction of the client's organization (of ``case`` if given)."""
    if case is None:
        case = (await client.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    rows = (await client.get(f"/api/v1/cases/{case}/transactions?flagged=false&limit=5")).json()
    return dict(rows["items"][0])


async def _flag(client: httpx.AsyncClient, txn_id: int, **body: Any) -> httpx.Response:
    return await client.post(f"/api/v1/transactions/{txn_id}/flag", json={"reason": "odd", **body})


async def _item(analyst: httpx.AsyncClient, priority: int = 3) -> dict[str, Any]:
    txn = await _txn(analyst)
    response = await _flag(analyst, txn["id"], priority=priority)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _reviewers(app: FastAPI, login: Login, n: int) -> list[httpx.AsyncClient]:
    """``n`` reviewers of Acme: the seeded one and more made for the test."""
    db = app.state.services.db
    async with db.writer() as session:
        await session.execute(
            insert(User),
            [
                {
                    "organization_id": 1,
                    "email": f"reviewer{i}@acme.test",
                    "full_name": f"Reviewer {i}",
                    "password_hash": hash_password(DEMO_PASSWORD),
                    "role": Role.REVIEWER,
                    "is_active": True,
                }
                for i in range(2, n + 1)
            ],
        )
    return [await login("reviewer@acme.test")] + [
        await login(f"reviewer{i}@acme.test") for i in range(2, n + 1)
    ]


async def test_flag_creates_a_pending_item_and_a_second_flag_is_409(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    txn = await _txn(analyst)
    created = await _flag(analyst, txn["id"], priority=1)
    assert created.status_code == 201, created.text
    item = created.json()
    me = (await analyst.get("/api/v1/auth/me")).json()
    assert item["status"] == "pending"
    assert item["priority"] == 1
    assert item["flagged_by_id"] == me["id"]
    assert item["transaction"]["id"] == txn["id"]
    assert item["transaction"]["flagged"] is True
    assert created.headers["location"] == f"/api/v1/adjudication/{item['id']}"
    assert (await analyst.get(f"/api/v1/transactions/{txn['id']}")).json()["flagged"] is True
    again = await _flag(analyst, txn["id"])
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"item_id": item["id"]}


async def test_flag_refuses_reviewers_and_bad_bodies(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    txn = await _txn(analyst)
    assert (await _flag(reviewer, txn["id"])).status_code == 403
    assert (await _flag(analyst, txn["id"], reason="  ")).status_code == 422
    assert (await _flag(analyst, txn["id"], priority=0)).status_code == 422
    assert (await _flag(analyst, txn["id"], priority="1")).status_code == 422
    assert (await _flag(analyst, 2_000_000_000)).status_code == 404


async def test_queue_is_ordered_by_priority_then_age_and_pages(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    await _item(analyst, priority=5)
    urgent = await _item(analyst, priority=1)
    seen: list[dict[str, Any]] = []
    url = "/api/v1/adjudication?status=pending&limit=7"
    while url:
        body = (await reviewer.get(url)).json()
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        url = f"/api/v1/adjudication?status=pending&limit=7&cursor={cursor}" if cursor else ""
    keys = [(i["priority"], i["id"]) for i in seen]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert {i["status"] for i in seen} == {"pending"}
    assert seen[0]["priority"] == 1
    assert urgent["id"] in [i["id"] for i in seen if i["priority"] == 1]
    case = urgent["case_id"]
    of_case = (await reviewer.get(f"/api/v1/adjudication?case_id={case}&limit=200")).json()
    assert of_case["items"]
    assert {i["case_id"] for i in of_case["items"]} == {case}
    assert (await reviewer.get("/api/v1/adjudication?cursor=bm9wZQ")).status_code == 400


async def test_item_get_is_cached_with_an_etag_and_a_claim_changes_it(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    item = await _item(analyst)
    url = f"/api/v1/adjudication/{item['id']}"
    first = await reviewer.get(url)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert (await reviewer.get(url, headers={"If-None-Match": etag})).status_code == 304
    claimed = await reviewer.post(f"{url}/claim")
    assert claimed.status_code == 200, claimed.text
    after = await reviewer.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.json()["claimed_by_id"] == claimed.json()["claimed_by_id"]


async def test_claim_release_decide_happy_path(casebook_app: FastAPI, login: Login) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    me = (await reviewer.get("/api/v1/auth/me")).json()
    item = await _item(analyst)
    url = f"/api/v1/adjudication/{item['id']}"
    before = dt.datetime.now(dt.UTC)
    claimed = (await reviewer.post(f"{url}/claim")).json()
    assert claimed["claimed_by_id"] == me["id"]
    until = dt.datetime.fromisoformat(claimed["claimed_until"])
    minutes = casebook_app.state.services.settings.adjudication_lease_minutes
    assert before + dt.timedelta(minutes=minutes) <= until
    renewed = await reviewer.post(f"{url}/claim")  # the holder renews
    assert renewed.status_code == 200
    released = await reviewer.post(f"{url}/release")
    assert released.status_code == 200
    assert released.json()["claimed_by_id"] is None
    assert (await reviewer.post(f"{url}/release")).status_code == 409  # nothing to release
    assert (await reviewer.post(f"{url}/claim")).status_code == 200
    decided = await reviewer.post(f"{url}/decide", json={"outcome": "cleared", "reason": "ok"})
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["status"] == "decided"
    assert body["outcome"] == "cleared"
    assert body["decision_reason"] == "ok"
    assert body["decided_by_id"] == me["id"]
    assert body["claimed_by_id"] is None
    assert body["transaction"]["flagged"] is False  # cleared: the flag comes off
    again = await reviewer.post(f"{url}/decide", json={"outcome": "suspicious", "reason": "x"})
    assert again.status_code == 409
    assert (await reviewer.post(f"{url}/claim")).status_code == 409
    # Decided: the transaction may be flagged again.
    assert (await _flag(analyst, item["transaction_id"])).status_code == 201


async def test_decide_refusals(casebook_app: FastAPI, login: Login) -> None:
    analyst = await login("analyst@acme.test")
    reviewer, other = await _reviewers(casebook_app, login, 2)
    item = await _item(analyst)
    url = f"/api/v1/adjudication/{item['id']}"
    decision = {"outcome": "suspicious", "reason": "structuring"}
    # Not claimed: 409.
    unclaimed = await reviewer.post(f"{url}/decide", json=decision)
    assert unclaimed.status_code == 409
    assert "claim" in unclaimed.json()["error"]["message"]
    assert (await reviewer.post(f"{url}/claim")).status_code == 200
    # Another reviewer cannot claim, release or decide it.
    taken = await other.post(f"{url}/claim")
    assert taken.status_code == 409
    assert (
        taken.json()["error"]["details"]["claimed_by_id"]
        == ((await reviewer.get("/api/v1/auth/me")).json()["id"])
    )
    assert (await other.post(f"{url}/release")).status_code == 409
    assert (await other.post(f"{url}/decide", json=decision)).status_code == 409
    # Analysts never decide; the reason is required and not blank; outcomes are the three.
    assert (await analyst.post(f"{url}/decide", json=decision)).status_code == 403
    assert (await analyst.post(f"{url}/claim")).status_code == 403
    for bad in (
        {"outcome": "suspicious"},
        {"outcome": "suspicious", "reason": ""},
        {"outcome": "suspicious", "reason": " \n"},
        {"outcome": "approved", "reason": "x"},
    ):
        assert (await reviewer.post(f"{url}/decide", json=bad)).status_code == 422, bad
    # An expired lease decides nothing, and anyone may claim the item again.
    async with casebook_app.state.services.db.writer() as session:
        await session.execute(
            update(AdjudicationItem)
            .where(AdjudicationItem.id == item["id"])
            .values(claimed_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    expired = await reviewer.post(f"{url}/decide", json=decision)
    assert expired.status_code == 409
    assert "expired" in expired.json()["error"]["message"]
    assert (await other.post(f"{url}/claim")).status_code == 200
    assert (await other.post(f"{url}/decide", json=decision)).status_code == 200
    assert (await reviewer.get(url)).json()["transaction"]["flagged"] is True  # still flagged


async def test_if_match_is_honoured_on_decide(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    item = await _item(analyst)
    url = f"/api/v1/adjudication/{item['id']}"
    stale = (await reviewer.get(url)).headers["etag"]
    assert (await reviewer.post(f"{url}/claim", headers={"If-Match": stale})).status_code == 200
    refused = await reviewer.post(
        f"{url}/decide",
        json={"outcome": "escalate", "reason": "above my pay grade"},
        headers={"If-Match": stale},
    )
    assert refused.status_code == 412
    fresh = (await reviewer.get(url)).headers["etag"]
    decided = await reviewer.post(
        f"{url}/decide",
        json={"outcome": "escalate", "reason": "above my pay grade"},
        headers={"If-Match": fresh},
    )
    assert decided.status_code == 200
    assert decided.json()["outcome"] == "escalate"


async def test_four_eyes(casebook_app: FastAPI, login: Login) -> None:
    """Nobody decides (or claims) an item they flagged, or one of a case assigned to them;
    the case assignment is checked again at the decision."""
    admin = await login("admin@acme.test")
    reviewer = await login("reviewer@acme.test")
    admin_id = (await admin.get("/api/v1/auth/me")).json()["id"]
    reviewer_id = (await reviewer.get("/api/v1/auth/me")).json()["id"]
    flagged_by_admin = await _item(admin)
    refused = await admin.post(f"/api/v1/adjudication/{flagged_by_admin['id']}/claim")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "permission_denied"
    assert "four-eyes" in error["message"]
    assert "you flagged" in error["message"]
    # The reviewer claims an item; its case is then assigned to them: they may not decide.
    analyst = await login("analyst@acme.test")
    item = await _item(analyst)
    url = f"/api/v1/adjudication/{item['id']}"
    assert (await reviewer.post(f"{url}/claim")).status_code == 200
    async with casebook_app.state.services.db.writer() as session:
        await session.execute(
            update(Case).where(Case.id == item["case_id"]).values(assignee_id=reviewer_id)
        )
    decided = await reviewer.post(f"{url}/decide", json={"outcome": "cleared", "reason": "x"})
    assert decided.status_code == 403
    assert "assigned to you" in decided.json()["error"]["message"]
    # Nor claim another item of that case; the admin (not assigned, not the flagger) may.
    other = await _item(analyst)
    if other["case_id"] == item["case_id"]:
        assert (await reviewer.post(f"/api/v1/adjudication/{other['id']}/claim")).status_code == 403
    assert (await admin.post(f"{url}/release")).status_code == 200  # an admin frees it
    assert (await admin.post(f"{url}/claim")).status_code == 200
    assert admin_id != reviewer_id
    ok = await admin.post(f"{url}/decide", json={"outcome": "cleared", "reason": "fine"})
    assert ok.status_code == 200


def _hold_writes_until_all_arrive(app: FastAPI, parties: int) -> Any:
    """PostgreSQL: every claim waits, before the write path's read of the row FOR UPDATE,
    until all have read the item — each one found it free."""
    barrier = asyncio.Barrier(parties)
    engine = app.state.services.db.writer_engine.sync_engine
    arrived: set[int] = set()

    def before(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if "FOR UPDATE" in sql.upper() and id(conn) not in arrived:
            arrived.add(id(conn))
            await_only(barrier.wait())

    event.listen(engine, "before_cursor_execute", before)
    return lambda: event.remove(engine, "before_cursor_execute", before)


async def test_concurrent_claims_exactly_one_wins(casebook_app: FastAPI, login: Login) -> None:
    analyst = await login("analyst@acme.test")
    reviewers = await _reviewers(casebook_app, login, N)
    item = await _item(analyst)
    url = f"/api/v1/adjudication/{item['id']}/claim"
    db = casebook_app.state.services.db
    start = asyncio.Barrier(N)
    undo = _hold_writes_until_all_arrive(casebook_app, N) if not db.is_sqlite else None

    async def claim(client: httpx.AsyncClient) -> httpx.Response:
        await start.wait()
        return await client.post(url)

    try:
        async with asyncio.timeout(60):
            responses = await asyncio.gather(*(claim(c) for c in reviewers))
    finally:
        if undo is not None:
            undo()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (N - 1), [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    stored = (await reviewers[0].get(f"/api/v1/adjudication/{item['id']}")).json()
    assert stored["claimed_by_id"] == winner["claimed_by_id"]
    assert stored["version"] == winner["version"]


async def test_another_tenants_items_are_404(login: Login) -> None:
    acme = await login("analyst@acme.test")
    item = await _item(acme)
    txn = await _txn(acme)
    globex = await login("admin@globex.test")
    decision = {"outcome": "cleared", "reason": "x"}
    for method, path, body in (
        ("GET", "/api/v1/adjudication/{}", None),
        ("POST", "/api/v1/adjudication/{}/claim", None),
        ("POST", "/api/v1/adjudication/{}/release", None),
        ("POST", "/api/v1/adjudication/{}/decide", decision),
        ("POST", "/api/v1/transactions/{}/flag", {"reason": "x"}),
    ):
        own = txn["id"] if "flag" in path else item["id"]
        foreign = await globex.request(method, path.format(own), json=body)
        missing = await globex.request(method, path.format(2_000_000_000), json=body)
        assert foreign.status_code == missing.status_code == 404, (path, foreign.text)
        assert foreign.json()["error"]["code"] == missing.json()["error"]["code"]
    queue = (await globex.get("/api/v1/adjudication?limit=200")).json()["items"]
    assert item["id"] not in {i["id"] for i in queue}
    assert (await globex.get(f"/api/v1/adjudication?case_id={item['case_id']}")).json()[
        "items"
    ] == []


async def test_a_claim_is_published_on_the_queue_channel(
    casebook_app: FastAPI, login: Login
) -> None:
    """The claim's write publishes to ``queue:{org}`` in its transaction (the channel keeps
    history, so the publication is a row committed with the claim)."""
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    item = await _item(analyst)
    db = casebook_app.state.services.db

    async def queue_publications() -> list[dict[str, Any]]:
        async with db.reader() as session:
            rows = await session.scalars(
                select(publications_table.c.data)
                .where(publications_table.c.channel == "queue:1")
                .order_by(publications_table.c.seq)
            )
            return [orjson.loads(r) if isinstance(r, str | bytes) else r for r in rows]

    known = len(await queue_publications())
    assert (await reviewer.post(f"/api/v1/adjudication/{item['id']}/claim")).status_code == 200
    new = (await queue_publications())[known:]
    assert {"table": "adjudication_items", "op": "update", "key": [str(item["id"])]} in [
        {k: p.get(k) for k in ("table", "op", "key")} for p in new
    ], new


async def test_an_offline_decision_follows_the_same_rules(login: Login) -> None:
    """``adjudication.decide`` pushed through ``/sync/push``: refused without the pusher's
    lease and under four-eyes, applied with it; ``base_version`` is the item's version."""
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    item = await _item(analyst)
    url = f"/api/v1/adjudication/{item['id']}"

    def decide(mutation_id: int, base: int | None) -> dict[str, Any]:
        return {
            "mutation_id": mutation_id,
            "name": "adjudication.decide",
            "args": {"item_id": item["id"], "outcome": "escalate", "reason": "offline"},
            "base_version": base,
        }

    async def push(client: httpx.AsyncClient, *mutations: Any) -> list[dict[str, Any]]:
        response = await client.post(
            "/sync/push", json={"client_id": "queue-tab", "mutations": list(mutations)}
        )
        assert response.status_code == 200, response.text
        return list(response.json()["results"])

    unclaimed = await push(reviewer, decide(1, item["version"]))
    assert unclaimed[0]["status"] == "rejected"
    assert unclaimed[0]["error"]["code"] == "conflict"
    assert (await analyst.post(f"{url}/claim")).status_code == 403  # analysts never claim
    claimed = (await reviewer.post(f"{url}/claim")).json()
    stale = await push(reviewer, decide(2, item["version"]))
    assert stale[0]["status"] == "conflict"
    applied = await push(reviewer, decide(3, claimed["version"]))
    assert applied[0]["status"] == "applied", applied
    after = (await reviewer.get(url)).json()
    assert (after["status"], after["outcome"], after["decision_reason"]) == (
        "decided",
        "escalate",
        "offline",
    )
