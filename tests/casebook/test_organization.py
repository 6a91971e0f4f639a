"""Organization settings (issue #15): ``GET/PATCH /api/v1/organization`` for admins only,
cached with an ETag and invalidated by a change, If-Match on PATCH, validation as 422,
each organization its own; a claim takes the organization's lease length. On SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt

from .conftest import Login

URL = "/api/v1/organization"


async def test_admins_read_and_change_their_organization(login: Login) -> None:
    admin = await login("admin@acme.test")
    first = await admin.get(URL)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["name"] == "Acme Forensics"
    assert body["default_currency"] == "EUR"
    assert body["adjudication_lease_minutes"] is None
    assert body["effective_lease_minutes"] == body["adjudication_lease_minutes_default"]
    assert body["report_footer"] == ""
    etag = first.headers["etag"]
    assert (await admin.get(URL, headers={"If-None-Match": etag})).status_code == 304

    changed = await admin.patch(
        URL,
        json={
            "report_footer": "SECRET",
            "default_currency": "CHF",
            "adjudication_lease_minutes": 42,
        },
        headers={"If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == body["version"] + 1
    assert changed.json()["effective_lease_minutes"] == 42
    after = await admin.get(URL, headers={"If-None-Match": etag})
    assert after.status_code == 200  # the cached answer went with the change
    assert after.json()["report_footer"] == "SECRET"
    assert after.json()["default_currency"] == "CHF"
    # The ETag read before the change no longer matches: 412, nothing written.
    stale = await admin.patch(URL, json={"report_footer": "late"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert (await admin.get(URL)).json()["report_footer"] == "SECRET"
    # null: back to the deployment's default lease.
    reset = await admin.patch(URL, json={"adjudication_lease_minutes": None})
    assert reset.json()["adjudication_lease_minutes"] is None
    # Each organization its own.
    globex = await login("admin@globex.test")
    theirs = (await globex.get(URL)).json()
    assert (theirs["name"], theirs["report_footer"]) == ("Globex Investigations", "")
    assert (await globex.patch(URL, json={"report_footer": "GLOBEX"})).status_code == 200
    assert (await admin.get(URL)).json()["report_footer"] == "SECRET"


async def test_only_admins_and_only_valid_settings(login: Login) -> None:
    admin = await login("admin@acme.test")
    for email in ("analyst@acme.test", "reviewer@acme.test"):
        other = await login(email)
        assert (await other.get(URL)).status_code == 403
        assert (await other.patch(URL, json={"report_footer": "x"})).status_code == 403
    # An admin's cached answer is never replayed to a non-admin.
    assert (await admin.get(URL)).status_code == 200
    assert (await (await login("analyst@acme.test")).get(URL)).status_code == 403
    for bad in (
        {"default_currency": "eur"},
        {"default_currency": "EURO"},
        {"adjudication_lease_minutes": 0},
        {"adjudication_lease_minutes": 24 * 60 + 1},
        {"adjudication_lease_minutes": "15"},
        {"report_footer": "x" * 201},
        {"report_footer": "a\x00b"},
        {"name": ""},
        {"name": None},
        {"slug": "taken"},
    ):
        response = await admin.patch(URL, json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"]
    assert (await admin.get(URL)).json()["version"] == 1


async def test_a_claim_lasts_the_organizations_lease(login: Login) -> None:
    admin = await login("admin@acme.test")
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    assert (await admin.patch(URL, json={"adjudication_lease_minutes": 90})).status_code == 200
    case = (await analyst.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    txn = (await analyst.get(f"/api/v1/cases/{case}/transactions?flagged=false&limit=1")).json()
    item = await analyst.post(
        f"/api/v1/transactions/{txn['items'][0]['id']}/flag", json={"reason": "odd"}
    )
    before = dt.datetime.now(dt.UTC)
    claimed = await reviewer.post(f"/api/v1/adjudication/{item.json()['id']}/claim")
    assert claimed.status_code == 200, claimed.text
    until = dt.datetime.fromisoformat(claimed.json()["claimed_until"])
    after = dt.datetime.now(dt.UTC)
    assert before + dt.timedelta(minutes=90) <= until <= after + dt.timedelta(minutes=90)
