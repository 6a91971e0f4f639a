"""Bad input is a 4xx envelope, never a 500 (issue #13): each case below once was a 500 or
let abuse through. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from casebook.imports import spool_path
from casebook.models import Report

from .conftest import Login

TOO_BIG = (
    "99999999999999999999",
    "2147483648",  # PostgreSQL's INTEGER ends at 2^31 - 1
    "9223372036854775808",
    "-1",
    "0",
)


def cursor(values: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).rstrip(b"=").decode()


def assert_envelope(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    assert set(error) == {"code", "message", "request_id", "details"}
    return error


async def test_integers_beyond_their_column_are_422(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    admin = await login("admin@acme.test")
    for value in TOO_BIG:
        for path in (f"/api/v1/cases/{value}", f"/api/v1/subjects/{value}"):
            assert_envelope(await analyst.get(path), 422)
        assert_envelope(await analyst.get(f"/api/v1/cases?assignee_id={value}"), 422)
        assert_envelope(await analyst.get(f"/api/v1/subjects?case_id={value}"), 422)
        assert_envelope(await analyst.get(f"/api/v1/outbox?before={value}"), 422)
        body = {"reference": "R-big", "title": "t", "assignee_id": int(value)}
        assert_envelope(await analyst.post("/api/v1/cases", json=body), 422)
    assert_envelope(await admin.get("/api/v1/jobs/9223372036854775808"), 422)
    for amount in ("1e30", "99999999999999999", "-1", "1.001"):
        response = await analyst.get(f"/api/v1/cases/1/transactions?min_amount={amount}")
        assert_envelope(response, 422)


async def test_null_for_a_required_column_is_422(login: Login) -> None:
    client = await login("analyst@acme.test")
    for field in ("title", "status", "priority", "description"):
        response = await client.patch("/api/v1/cases/1", json={field: None})
        error = assert_envelope(response, 422)
        assert field in str(error["message"]) + str(error["details"])
    txn = (await client.get("/api/v1/cases/1/transactions?limit=1")).json()["items"][0]["id"]
    for field in ("category", "flagged", "description"):
        assert_envelope(await client.patch(f"/api/v1/transactions/{txn}", json={field: None}), 422)
    # Where the column may be empty, null empties it.
    assert (await client.patch("/api/v1/cases/1", json={"assignee_id": None})).status_code == 200


@pytest.mark.parametrize(
    "values", [["a"], [None], [[1]], [1e30], [2147483648], [True], ["2026-01-01", "x"], {}]
)
async def test_cursors_of_the_wrong_shape_are_400(login: Login, values: object) -> None:
    client = await login("analyst@acme.test")
    for path in ("/api/v1/cases", "/api/v1/subjects", "/api/v1/cases/1/transactions"):
        assert_envelope(await client.get(f"{path}?cursor={cursor(values)}"), 400)


async def test_months_and_dates_outside_the_calendar_are_422(login: Login) -> None:
    client = await login("analyst@acme.test")
    for month in ("0000-01", "9999-12", "2026-13", "2026-1"):
        assert_envelope(await client.get(f"/api/v1/dashboard/summary?month={month}"), 422)
        drill = f"/api/v1/dashboard/categories/x/transactions?month={month}"
        assert_envelope(await client.get(drill), 422)
    assert (await client.get("/api/v1/dashboard/summary?month=2026-01")).status_code == 200
    body = {"posted_on": 0, "amount": "1", "direction": "debit", "category": "x"}
    assert_envelope(await client.post("/api/v1/cases/1/transactions", json=body), 422)


async def test_nul_bytes_are_refused_on_both_backends(login: Login) -> None:
    client = await login("analyst@acme.test")
    assert_envelope(
        await client.post("/api/v1/cases", json={"reference": "N", "title": "a\0b"}), 422
    )
    assert_envelope(await client.patch("/api/v1/cases/1", json={"description": "\0"}), 422)
    assert_envelope(await client.get("/api/v1/cases?q=%00"), 400)
    assert_envelope(await client.get("/api/v1/dashboard/categories/a%00b/transactions"), 400)
    login_form = {"username": "analyst@acme.test\0", "password": "demo"}
    assert_envelope(await client.post("/api/v1/auth/token", data=login_form), 422)


async def test_like_wildcards_match_only_themselves(login: Login) -> None:
    client = await login("analyst@acme.test")
    everything = (await client.get("/api/v1/cases?limit=200")).json()["items"]
    assert everything
    for wildcard in ("%25", "_", "%25%25", "\\"):
        assert (await client.get(f"/api/v1/cases?q={wildcard}")).json()["items"] == []


async def test_a_broken_multipart_body_is_400(login: Login) -> None:
    client = await login("analyst@acme.test")
    response = await client.post(
        "/api/v1/cases/1/imports",
        content=b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n--c--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code in (400, 422), response.text
    broken = await client.post(
        "/api/v1/cases/1/imports",
        content=b"\x00\xff garbage",
        headers={"Content-Type": "multipart/form-data; boundary=\x7f"},
    )
    assert_envelope(broken, 400)


async def test_a_foreign_missing_or_other_cases_subject_get_one_answer(login: Login) -> None:
    acme = await login("analyst@acme.test")
    globex = await login("analyst@globex.test")
    acme_cases = [c["id"] for c in (await acme.get("/api/v1/cases?limit=200")).json()["items"]]
    subjects = (await acme.get("/api/v1/subjects?limit=200")).json()["items"]
    own = next(s for s in subjects if s["case_id"] == acme_cases[0])
    other_case = next(s for s in subjects if s["case_id"] != acme_cases[0])
    foreign = (await globex.get("/api/v1/subjects?limit=1")).json()["items"][0]
    body = {"posted_on": "2026-01-01", "amount": "1", "direction": "debit", "category": "x"}
    answers = []
    for subject_id in (other_case["id"], foreign["id"], 2_000_000_000):
        response = await acme.post(
            f"/api/v1/cases/{acme_cases[0]}/transactions", json={**body, "subject_id": subject_id}
        )
        error = assert_envelope(response, 422)
        answers.append((error["code"], error["message"], error["details"]))
    assert len(set(map(repr, answers))) == 1
    ok = {**body, "subject_id": own["id"]}
    assert (await acme.post(f"/api/v1/cases/{acme_cases[0]}/transactions", json=ok)).is_success


async def test_405_names_every_method_of_the_resource(login: Login) -> None:
    client = await login("analyst@acme.test")
    response = await client.request("OPTIONS", "/api/v1/cases/1")
    assert_envelope(response, 405)
    assert response.headers["allow"] == "DELETE, GET, PATCH"
    assert (await client.put("/api/v1/cases")).headers["allow"] == "GET, POST"


async def test_validation_errors_are_capped(login: Login) -> None:
    client = await login("analyst@acme.test")
    body = {f"unknown_{i}": i for i in range(5_000)} | {"reference": "R", "title": "t"}
    error = assert_envelope(await client.post("/api/v1/cases", json=body), 422)
    assert isinstance(error["details"], list)
    assert len(error["details"]) == 20
    assert "20 of 5000" in str(error["message"])


async def test_bodies_over_the_limit_are_413_before_they_are_read(
    login: Login, anonymous: httpx.AsyncClient
) -> None:
    client = await login("analyst@acme.test")
    big = b'{"reference": "R", "title": "' + b"x" * (1024 * 1024) + b'"}'
    response = await client.post(
        "/api/v1/cases", content=big, headers={"Content-Type": "application/json"}
    )
    assert_envelope(response, 413)
    # Without a valid token the limit is 64 KiB: a large body never gets to be parsed.
    response = await anonymous.post(
        "/api/v1/cases", content=big[: 100 * 1024], headers={"Content-Type": "application/json"}
    )
    assert_envelope(response, 413)
    small = await anonymous.post("/api/v1/cases", json={"reference": "R", "title": "t"})
    assert_envelope(small, 401)

    async def chunks() -> object:  # no Content-Length: counted as it streams
        for _ in range(40):
            yield b"x" * 32 * 1024

    streamed = await client.post(
        "/api/v1/cases", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_envelope(streamed, 413)


async def test_refresh_takes_a_form_or_json(anonymous: httpx.AsyncClient) -> None:
    tokens = await anonymous.post(
        "/api/v1/auth/token", data={"username": "analyst@acme.test", "password": "demo"}
    )
    refresh_token = tokens.json()["refresh_token"]
    as_json = await anonymous.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert as_json.status_code == 200, as_json.text
    rotated = as_json.json()["refresh_token"]
    as_form = await anonymous.post("/api/v1/auth/refresh", data={"refresh_token": rotated})
    assert as_form.status_code == 200, as_form.text
    assert_envelope(await anonymous.post("/api/v1/auth/refresh", json={}), 422)
    assert_envelope(await anonymous.post("/api/v1/auth/refresh", content=b"{"), 400)
    bad = await anonymous.post("/api/v1/auth/refresh", json={"refresh_token": "x.y.z"})
    assert_envelope(bad, 401)


async def test_deleting_a_case_removes_its_files(login: Login, casebook_app: FastAPI) -> None:
    analyst = await login("analyst@acme.test")
    admin = await login("admin@acme.test")
    services = casebook_app.state.services
    upload = await analyst.post(
        "/api/v1/cases/2/imports",
        files={"file": ("s.csv", b"date,amount,direction,category\n2026-01-05,1.00,debit,x\n")},
    )
    assert upload.status_code == 202, upload.text  # queued: no worker runs in this test
    spooled = spool_path(services.settings.data_dir, upload.json()["id"])
    assert spooled.exists()
    report = (await analyst.post("/api/v1/cases/2/reports")).json()
    pdf = services.settings.data_dir / "reports" / "case-2.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.write_bytes(b"%PDF-1.4")
    async with services.db.writer() as session:
        await session.execute(
            update(Report).where(Report.id == report["id"]).values(file_path=str(pdf))
        )
    assert (await admin.delete("/api/v1/cases/2")).status_code == 204
    assert not spooled.exists()
    assert not pdf.exists()


async def test_who_may_delete_what(login: Login) -> None:
    """Deletes of a case (and everything in it) are for admins; analysts correct a case's
    subjects and ledger, deletes included; reviewers delete nothing."""
    reviewer = await login("reviewer@acme.test")
    analyst = await login("analyst@acme.test")
    subject = (await analyst.get("/api/v1/cases/1/subjects")).json()["items"][0]["id"]
    txn = (await analyst.get("/api/v1/cases/1/transactions?limit=1")).json()["items"][0]["id"]
    for path in (f"/api/v1/subjects/{subject}", f"/api/v1/transactions/{txn}", "/api/v1/cases/1"):
        assert_envelope(await reviewer.delete(path), 403)
    assert_envelope(await analyst.delete("/api/v1/cases/1"), 403)
    assert (await analyst.delete(f"/api/v1/transactions/{txn}")).status_code == 204
    assert (await analyst.delete(f"/api/v1/subjects/{subject}")).status_code == 204
