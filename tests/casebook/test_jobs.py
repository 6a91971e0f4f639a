"""casebook's background jobs through its API: case report PDFs (rendered in the process
pool), the notification fan-out into the outbox, and the admin jobs API; on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
from fastapi import FastAPI
from sqlalchemy import select, text

from casebook.models import Report
from casebook.services import Services
from lockstep import Jobs

Login = Callable[[str], Awaitable[httpx.AsyncClient]]


async def all_jobs_finished(jobs: Jobs) -> None:
    """Wait (on the worker's finish events, no sleeping) until no job is live; a schedule's
    next tick, waiting for its time, does not count."""
    while True:
        finished = jobs.next_finish()
        live = await jobs.list_jobs(states=["scheduled", "queued", "running"])
        if all(j.schedule_key is not None and j.state == "scheduled" for j in live):
            return
        await finished.wait()


async def test_report_pdf_is_rendered_and_notifications_reach_the_outbox(
    casebook_app: FastAPI, login: Login
) -> None:
    services: Services = casebook_app.state.services
    client = await login("analyst@acme.test")
    case = (await client.get("/api/v1/cases?limit=1")).json()["items"][0]
    created = await client.post(f"/api/v1/cases/{case['id']}/reports")
    assert created.status_code == 202, created.text
    report = created.json()
    assert report["status"] == "pending"
    assert report["job_id"] is not None
    assert created.headers["location"] == f"/api/v1/reports/{report['id']}"
    pending = await client.get(f"/api/v1/reports/{report['id']}/file")
    assert pending.status_code == 409

    async with services.worker(poll_interval=0.05, process_workers=1, lease=10):
        async with asyncio.timeout(60):
            rendered = await services.jobs.result(report["job_id"])
            await all_jobs_finished(services.jobs)
    assert rendered["pages"] >= 1
    status = (await client.get(f"/api/v1/reports/{report['id']}")).json()
    assert status["status"] == "ready"
    # The case's list (the reports tab): newest first, with the file once ready.
    listed = (await client.get(f"/api/v1/cases/{case['id']}/reports")).json()["items"]
    assert [(r["id"], r["status"], r["file_url"]) for r in listed] == [
        (report["id"], "ready", status["file_url"])
    ]
    globex = await login("analyst@globex.test")
    assert (await globex.get(f"/api/v1/cases/{case['id']}/reports")).status_code == 404
    assert status["job"]["state"] == "succeeded"
    assert status["job"]["progress"]["message"] == "rendered"
    pdf = await client.get(status["file_url"])
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert len(pdf.content) == rendered["bytes"]

    outbox = (await client.get("/api/v1/outbox")).json()["items"]
    emails = sorted(m["recipient"] for m in outbox if m["channel"] == "email")
    assert emails == ["admin@acme.test", "analyst@acme.test"]
    assert [m["channel"] for m in outbox].count("sms") == 1
    assert all(m["subject"].startswith("Report ready") for m in outbox)
    other_org = await login("analyst@globex.test")
    assert (await other_org.get("/api/v1/outbox")).json()["items"] == []
    assert (await other_org.get(f"/api/v1/reports/{report['id']}")).status_code == 404


async def test_report_and_job_commit_together(casebook_app: FastAPI, login: Login) -> None:
    """The report row and its job are one transaction: a refused request leaves neither."""
    services: Services = casebook_app.state.services
    acme = await login("analyst@acme.test")
    globex_case = 10_000  # not acme's: 404, nothing written
    refused = await acme.post(f"/api/v1/cases/{globex_case}/reports")
    assert refused.status_code == 404
    reviewer = await login("reviewer@acme.test")
    assert (await reviewer.post("/api/v1/cases/1/reports")).status_code == 403
    async with services.db.reader() as session:
        assert (await session.scalars(select(Report))).all() == []
        assert await session.scalar(text("SELECT count(*) FROM lockstep_jobs")) == 0


async def test_jobs_admin_api(casebook_app: FastAPI, login: Login) -> None:
    """Requirement 13 (API): list / retry / cancel, admins only, per organization."""
    analyst = await login("analyst@acme.test")
    admin = await login("admin@acme.test")
    case = (await analyst.get("/api/v1/cases?limit=1")).json()["items"][0]
    job_id = (await analyst.post(f"/api/v1/cases/{case['id']}/reports")).json()["job_id"]

    assert (await analyst.get("/api/v1/jobs")).status_code == 403
    listed = (await admin.get("/api/v1/jobs?state=queued")).json()["items"]
    assert [(j["id"], j["task"], j["queue"]) for j in listed] == [
        (job_id, "casebook.reports.generate", "reports")
    ]
    cancelled = await admin.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.json()["state"] == "cancelled"
    again = await admin.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "job_state_conflict"
    retried = await admin.post(f"/api/v1/jobs/{job_id}/retry")
    assert retried.json()["state"] == "queued"
    assert (await admin.post(f"/api/v1/jobs/{job_id}/retry")).status_code == 409
    detail = (await admin.get(f"/api/v1/jobs/{job_id}")).json()
    assert detail["args"] == {"report_id": 1}
    queues = {q["queue"]: q for q in (await admin.get("/api/v1/jobs/queues")).json()["items"]}
    assert queues["reports"]["queued"] == 1
    assert {"notifications", "default"} <= set(queues)
    assert (await admin.get("/api/v1/jobs?state=bogus")).status_code == 422

    other_admin = await login("admin@globex.test")
    assert (await other_admin.get(f"/api/v1/jobs/{job_id}")).status_code == 404
    assert (await other_admin.post(f"/api/v1/jobs/{job_id}/cancel")).status_code == 404
    assert (await other_admin.get("/api/v1/jobs")).json()["items"] == []
    assert (await admin.get("/api/v1/jobs/999999")).status_code == 404
