"""CSV import of transactions into a case: streamed upload, a job per import (queued,
progress, retried without importing twice), detection and mapping, rejects report,
all-or-nothing, duplicate refusal; imported rows reach the rollups and dashboards."""

from __future__ import annotations

import asyncio
import codecs
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

import casebook.statements
from casebook.imports import Sweep, run_queued_import, spool_path, sweep_uploads, uploads_dir
from casebook.models import ImportRecord, ImportStatus, Transaction, utcnow
from casebook.rollups import AGGREGATES
from casebook.services import Services
from casebook.tasks import sweep_imports, tasks
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


WAIT = {"Prefer": "wait=60"}  # answer with the outcome (the worker fixture runs the job)


async def assert_rollups_exact(db: Database) -> None:
    for report in await AGGREGATES.verify(db):
        assert report.ok, [d.describe() for d in report.discrepancies]


async def test_bank_export_with_bom_semicolons_and_decimal_commas(
    login: Login, casebook_app: FastAPI, worker: None
) -> None:
    db = casebook_app.state.services.db
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    before = await case_rows(db, case_id)
    etag = (await client.get(f"/api/v1/cases/{case_id}/dashboard")).headers["etag"]
    created = await client.post(
        f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT), headers=WAIT
    )
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
    login: Login, casebook_app: FastAPI, worker: None
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
    url = f"/api/v1/cases/{case_id}/imports"
    asks = await client.post(url, files=upload(bad), headers=WAIT)
    assert asks.status_code == 422  # every amount positive: a card statement, or money in?
    assert [q["key"] for q in asks.json()["error"]["details"]["questions"]] == ["sign"]
    answered = {"map": "sign=as_written"}
    refused = await client.post(url, files=upload(bad), headers=WAIT, params=answered)
    assert refused.status_code == 422
    details = refused.json()["error"]["details"]
    assert details["rows_rejected"] == 4
    assert [(r["row"], r["column"]) for r in details["rejects"]] == [
        (3, "date"),
        (4, "amount"),
        (5, "currency"),  # the category is optional (uncategorized), the currency is wrong
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
        params={"policy": "skip_invalid", **answered},
        files=upload(bad),
        headers=WAIT,
    )
    assert kept.status_code == 201, kept.text
    assert (kept.json()["rows_imported"], kept.json()["rows_rejected"]) == (1, 4)
    assert await case_rows(db, case_id) == before + 1
    await assert_rollups_exact(db)


async def test_the_same_file_twice_is_refused(
    login: Login, casebook_app: FastAPI, worker: None
) -> None:
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    other = await login("analyst@globex.test")  # another tenant: no such case for them
    assert (
        await other.post(f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT))
    ).status_code == 404
    first = await client.post(
        f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT), headers=WAIT
    )
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
    login: Login, casebook_app: FastAPI, worker: None
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

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", **WAIT}
    url = f"/api/v1/cases/{case_id}/imports?map=sign=as_written"  # every amount is positive
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
    # no spool left behind: not the refused one, nor the imported one (its job deleted it)
    assert list((settings.data_dir / "uploads").iterdir()) == []


def statement(rows: int) -> bytes:
    lines = ["date,amount,category,counterparty"]
    lines += [
        f"2026-05-{1 + i % 28:02d},{'-' if i % 3 else ''}{i % 900 + 1}.25,wire,Party {i}"
        for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


async def test_an_upload_waits_queued_for_a_worker_and_a_second_copy_is_refused(
    login: Login, casebook_app: FastAPI
) -> None:
    services: Services = casebook_app.state.services
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    before = await case_rows(services.db, case_id)
    queued = await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT))
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert (body["status"], body["job"]["state"]) == ("queued", "queued")
    assert queued.headers["location"] == f"/api/v1/imports/{body['id']}"
    assert spool_path(services.settings.data_dir, body["id"]).is_file()  # waiting for its job
    again = await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT))
    assert again.status_code == 409
    assert (
        f"already being imported into case {case_id} as import {body['id']}"
        in (again.json()["error"]["message"])
    )
    assert await case_rows(services.db, case_id) == before  # nothing runs without a worker

    async with services.worker(poll_interval=0.05, lease=30), asyncio.timeout(60):
        result = await services.jobs.result(body["job_id"])
    assert result["status"] == "imported"
    done = (await client.get(f"/api/v1/imports/{body['id']}")).json()
    assert (done["status"], done["rows_imported"], done["job"]["state"]) == (
        "imported",
        3,
        "succeeded",
    )
    assert await case_rows(services.db, case_id) == before + 3
    assert not spool_path(services.settings.data_dir, body["id"]).exists()


async def test_progress_of_a_running_import_is_visible_while_it_holds_the_writer(
    login: Login, casebook_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the import's transaction holds the only writer, so its progress cannot be
    stored until it commits; the worker's process still shows the latest report."""
    services: Services = casebook_app.state.services
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    content = statement(12_000)  # three batches of 5,000 rows: progress after each
    second_batch, release = asyncio.Event(), asyncio.Event()
    real_insert = casebook.statements.bulk_insert
    calls = 0

    async def paused_insert(session: Any, table: Any, rows: Any) -> None:
        nonlocal calls
        calls += 1
        await real_insert(session, table, rows)
        if calls == 2:  # the first batch is written and reported; hold the transaction
            second_batch.set()
            await release.wait()

    monkeypatch.setattr(casebook.statements, "bulk_insert", paused_insert)
    queued = (await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(content))).json()
    async with services.worker(poll_interval=0.05, lease=30), asyncio.timeout(60):
        await second_batch.wait()
        running = (await client.get(f"/api/v1/imports/{queued['id']}")).json()
        assert (running["status"], running["job"]["state"]) == ("running", "running")
        progress = running["job"]["progress"]
        assert 0 < progress["current"] < progress["total"] == len(content)
        assert progress["message"].endswith("rows read")
        release.set()
        await services.jobs.result(queued["job_id"])
    done = (await client.get(f"/api/v1/imports/{queued['id']}")).json()
    assert (done["status"], done["rows_imported"]) == ("imported", 12_000)
    await assert_rollups_exact(services.db)


async def test_an_attempt_that_fails_midway_is_rolled_back_and_the_retry_imports_once(
    login: Login, casebook_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    services: Services = casebook_app.state.services
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    before = await case_rows(services.db, case_id)
    content = statement(7_000)  # two batches: the second one fails on the first attempt
    calls = 0
    real_insert = casebook.statements.bulk_insert

    async def flaky_insert(session: Any, table: Any, rows: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the disk went away")
        await real_insert(session, table, rows)

    monkeypatch.setattr(casebook.statements, "bulk_insert", flaky_insert)
    queued = (await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(content))).json()
    async with services.worker(poll_interval=0.05, lease=30), asyncio.timeout(60):
        while (job := await services.jobs.get(queued["job_id"])).state.value != "scheduled":
            await services.jobs.next_finish().wait()
        assert job.attempt == 1
        assert "the disk went away" in (job.error or "")
        record = (await client.get(f"/api/v1/imports/{queued['id']}")).json()
        assert record["status"] == "running"  # not failed: another attempt is coming
        assert await case_rows(services.db, case_id) == before  # the first batch rolled back
        await services.jobs.retry(queued["job_id"])  # now, not after the backoff
        result = await services.jobs.result(queued["job_id"])
    assert result["rows_imported"] == 7_000
    assert await case_rows(services.db, case_id) == before + 7_000
    # the job's body run once more (a crash after the import committed) changes nothing
    again = await run_queued_import(
        services.db, services.settings.data_dir, queued["id"], last_try=True
    )
    assert (again.status.value, again.outcome) == ("imported", None)
    assert await case_rows(services.db, case_id) == before + 7_000
    await assert_rollups_exact(services.db)


async def test_a_cancelled_import_reads_as_failed(login: Login, casebook_app: FastAPI) -> None:
    services: Services = casebook_app.state.services
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    queued = (
        await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT))
    ).json()
    await services.jobs.cancel(queued["job_id"])
    record = (await client.get(f"/api/v1/imports/{queued['id']}")).json()
    assert (record["status"], record["job"]["state"]) == ("failed", "cancelled")
    assert record["message"] == "its job ended cancelled"
    # The same file again is a new import: the cancelled one no longer waits for it.
    again = await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(BANK_EXPORT))
    assert again.status_code == 202, again.text
    assert again.json()["id"] != queued["id"]


def backdate(path: Path, hours: float = 2.0) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


async def test_the_sweep_settles_cancelled_imports_and_deletes_files_nobody_waits_for(
    login: Login, casebook_app: FastAPI
) -> None:
    services: Services = casebook_app.state.services
    data_dir = services.settings.data_dir
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    url = f"/api/v1/cases/{case_id}/imports"
    cancelled = (await client.post(url, files=upload(BANK_EXPORT))).json()
    waiting = (await client.post(url, files=upload(BANK_EXPORT + b"2026-03-03;5;cash;x;\n"))).json()
    await services.jobs.cancel(cancelled["job_id"])
    cut_off = uploads_dir(data_dir) / "lockstep-upload-cut-off.csv"  # its request died
    arriving = uploads_dir(data_dir) / "lockstep-upload-arriving.csv"
    for path in (cut_off, arriving):
        path.write_bytes(b"date,amount\n")
    for path in (
        spool_path(data_dir, cancelled["id"]),
        spool_path(data_dir, waiting["id"]),
        cut_off,
    ):
        backdate(path)

    swept = await sweep_uploads(services.db, services.jobs, data_dir)
    assert swept.settled == (cancelled["id"],)
    assert sorted(swept.removed) == sorted([f"import-{cancelled['id']}.csv", cut_off.name])
    assert spool_path(data_dir, waiting["id"]).is_file()  # its job is still to run
    assert arriving.is_file()  # too young to tell
    async with services.db.reader() as session:
        record = await session.get(ImportRecord, cancelled["id"])
    assert record is not None
    assert (record.status.value, record.message) == ("failed", "its job ended cancelled")
    assert await sweep_uploads(services.db, services.jobs, data_dir) == Sweep((), ())

    # An import the CLI started (no job) is abandoned once it has run longer than any may.
    async with services.db.writer() as session:
        cli_runs = [
            ImportRecord(
                organization_id=1, case_id=case_id, filename=f"cli-{age}.csv",
                content_sha256=f"{age:064d}", status=ImportStatus.RUNNING, policy="all_or_nothing",
                size_bytes=1, encoding="utf-8", created_at=utcnow() - dt.timedelta(minutes=age),
            )
            for age in (5, 45)
        ]  # fmt: skip
        session.add_all(cli_runs)
    swept = await sweep_uploads(services.db, services.jobs, data_dir)
    assert swept.settled == (cli_runs[1].id,)  # the 45-minute-old one; the other may still run
    async with services.db.reader() as session:
        stale = await session.get(ImportRecord, cli_runs[1].id)
    assert stale is not None
    assert stale.message == "interrupted: the command running it ended before the import did"

    # The same, as the scheduled task in a worker (which imports the waiting file meanwhile).
    async with services.worker(poll_interval=0.05, lease=30), asyncio.timeout(60):
        await services.jobs.result(waiting["job_id"])
        result = await services.jobs.result(await services.jobs.enqueue(sweep_imports, {}))
    assert result == {"settled": [], "removed": []}
    assert any(s.task == "casebook.imports.sweep" for s in tasks.schedules)


async def test_a_file_without_dates_or_amounts_is_refused_with_its_questions(
    login: Login, casebook_app: FastAPI, worker: None
) -> None:
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    response = await client.post(
        f"/api/v1/cases/{case_id}/imports",
        files=upload(b"name,colour\nx,red\n"),
        headers=WAIT,
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert "cannot be imported before these are answered" in error["message"]
    keys = [q["key"] for q in error["details"]["questions"]]
    assert keys == ["booking_date", "amount"]
    listed = (await client.get(f"/api/v1/cases/{case_id}/imports")).json()["items"]
    assert listed == []  # refused before anything was recorded or queued
