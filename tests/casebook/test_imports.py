"""CSV import of transactions into a case: streamed upload, detection and mapping, rejects
report, all-or-nothing, duplicate refusal; imported rows reach the rollups and dashboards."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from casebook.models import ImportRecord, Transaction
from casebook.rollups import AGGREGATES
from lockstep import Database

Login = Callable[[str], Awaitable[httpx.AsyncClient]]

BANK_EXPORT = (
    codecs.BOM_UTF8
    + "Booking Date;Amount;Category;Payee;Memo\n"
    "2026-03-01;-1.234,50;wire;Café Müller;rent March\n"
    "2026-03-02;89,99;card;Northwind;\n"
    "02.03.2026;-12;cash;ATM 7;\n".encode()
)


async def case_of(client: httpx.AsyncClient) -> int:
    return int((await client.get("/api/v1/cases", params={"limit": 1})).json()["items"][0]["id"])


async def case_rows(db: Database, case_id: int) -> int:
    async with db.reader() as s:
        stmt = select(func.count()).select_from(Transaction).where(Transaction.case_id == case_id)
        return int(await s.scalar(stmt) or 0)


def upload(content: bytes, name: str = "statement.csv") -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, content, "text/csv")}


async def assert_rollups_exact(db: Database) -> None:
    for report in await AGGREGATES.verify(db):
        assert report.ok, [d.describe() for d in report.discrepancies]


async def test_bank_export_with_bom_semicolons_and_decimal_commas(
    login: Login, casebook_app: FastAPI
) -> None:
    db = casebook_app.state.services.db
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    before = await case_rows(db, case_id)
    etag = (await client.get(f"/api/v1/cases/{case_id}/dashboard")).headers["etag"]
    created = await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT))
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["status"], body["rows_imported"], body["delimiter"]) == ("imported", 3, ";")
    assert body["encoding"] == "utf-8-sig"
    assert created.headers["location"] == f"/api/v1/imports/{body['id']}"
    assert await case_rows(db, case_id) == before + 3
    async with db.reader() as s:
        rent = await s.scalar(select(Transaction).where(Transaction.description == "rent March"))
    assert rent is not None
    assert (rent.amount_cents, rent.direction.value, rent.counterparty) == (
        123450,
        "debit",
        "Café Müller",
    )
    await assert_rollups_exact(db)
    # the case dashboard changed (its rollup rows changed in the import's transaction)
    again = await client.get(f"/api/v1/cases/{case_id}/dashboard", headers={"If-None-Match": etag})
    assert again.status_code == 200
    listed = (await client.get(f"/api/v1/cases/{case_id}/imports")).json()["items"]
    assert listed[0]["id"] == body["id"]


async def test_bad_rows_store_nothing_and_the_rejects_report_says_why(
    login: Login, casebook_app: FastAPI
) -> None:
    db = casebook_app.state.services.db
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    before = await case_rows(db, case_id)
    bad = (
        b"date,amount,category,currency\n"
        b"2026-01-01,10.00,wire,EUR\n"
        b"2026-02-30,5,card,EUR\n"  # no such day
        b"2026-01-03,abc,card,EUR\n"
        b"2026-01-04,7,,EURO\n"  # category missing, bad currency
        b"2026-01-05,=1+2,card,EUR\n"  # a formula: reported as inert text
    )
    refused = await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(bad))
    assert refused.status_code == 422
    details = refused.json()["error"]["details"]
    assert details["rows_rejected"] == 4
    assert [(r["row"], r["column"]) for r in details["rejects"]] == [
        (3, "date"),
        (4, "amount"),
        (5, "category"),
        (5, "currency"),
        (6, "amount"),
    ]
    assert await case_rows(db, case_id) == before  # all or nothing
    report = await client.get(details["rejects_url"])
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    assert report.text.splitlines()[0] == "row,column,reason,value"
    assert "4,amount,is not an amount,abc" in report.text
    assert "6,amount,is not an amount,'=1+2" in report.text
    record = (await client.get(f"/api/v1/imports/{details['import_id']}")).json()
    assert (record["status"], record["rows_imported"]) == ("rejected", 0)
    # the same file may be sent again (nothing of it was imported), with another policy
    kept = await client.post(
        f"/api/v1/cases/{case_id}/imports",
        params={"policy": "skip_invalid"},
        files=upload(bad),
    )
    assert kept.status_code == 201, kept.text
    assert (kept.json()["rows_imported"], kept.json()["rows_rejected"]) == (1, 4)
    assert await case_rows(db, case_id) == before + 1
    await assert_rollups_exact(db)


async def test_the_same_file_twice_is_refused(login: Login, casebook_app: FastAPI) -> None:
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    other = await login("analyst@globex.test")  # another tenant: no such case for them
    assert (
        await other.post(f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT))
    ).status_code == 404
    first = await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT))
    assert first.status_code == 201
    second = await client.post(
        f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT, "renamed.csv")
    )
    assert second.status_code == 409
    message = second.json()["error"]["message"]
    assert f"already imported into case {case_id} as import {first.json()['id']}" in message
    db = casebook_app.state.services.db
    async with db.reader() as s:
        claims = await s.scalar(
            select(func.count()).select_from(ImportRecord).where(ImportRecord.claim.is_not(None))
        )
    assert claims == 1


async def test_large_upload_is_streamed_and_the_limit_enforced_while_receiving(
    login: Login, casebook_app: FastAPI
) -> None:
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    rows_per_chunk, chunks = 500, 40  # 20,000 rows, about 1 MB, sent in 40 pieces
    sent = 0
    boundary = "lockstep-test-boundary"

    async def body(limit_chunks: int) -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\n'
            "date,amount,category,counterparty\r\n"
        ).encode()
        for chunk in range(limit_chunks):
            sent += 1
            yield "".join(
                f"2026-04-{1 + (chunk + i) % 28:02d},{chunk + 1}.{i % 100:02d},bulk,Party {i}\r\n"
                for i in range(rows_per_chunk)
            ).encode()
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    url = f"/api/v1/cases/{case_id}/imports"
    done = await client.post(url, content=body(chunks), headers=headers)
    assert done.status_code == 201, done.text
    assert done.json()["rows_imported"] == rows_per_chunk * chunks
    await assert_rollups_exact(casebook_app.state.services.db)

    settings = casebook_app.state.services.settings
    object.__setattr__(settings, "import_max_bytes", 100_000)
    sent = 0
    refused = await client.post(url, content=body(chunks), headers=headers)
    assert refused.status_code == 413
    assert sent < chunks  # refused while the body was still streaming in
    assert list((settings.data_dir / "uploads").iterdir()) == []  # no spool left behind
