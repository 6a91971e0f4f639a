"""The case report PDF (issue #15): its contents read back from the file — totals with
their currency, each decision and its reason, the open items, consent, the audit summary,
the footer on every page and the change-feed position it is as of — on SQLite and
PostgreSQL; the By-month table's colours; consent status as a plain function."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import case, func, select, update

from casebook.consent import consent_status
from casebook.models import ConsentRecord, Direction, Subject, Transaction
from casebook.reports import money, render_case_report
from casebook.services import Services
from lockstep.audit import audit_table
from lockstep.changes import ChangeFeed, Cursor

from .conftest import Login
from .pdf_runs import contrast_ratio, pdf_text, text_runs
from .test_jobs import all_jobs_finished

FOOTER = "CONFIDENTIAL - Acme internal use only"


async def _render(services: Services, client: httpx.AsyncClient, case_id: int) -> bytes:
    created = await client.post(f"/api/v1/cases/{case_id}/reports")
    assert created.status_code == 202, created.text
    report = created.json()
    async with services.worker(poll_interval=0.05, process_workers=1, lease=10):
        async with asyncio.timeout(60):
            await services.jobs.result(report["job_id"])
            await all_jobs_finished(services.jobs)
    status = (await client.get(f"/api/v1/reports/{report['id']}")).json()
    assert status["status"] == "ready", status
    pdf = await client.get(status["file_url"])
    assert pdf.status_code == 200
    return pdf.content


async def _flag(client: httpx.AsyncClient, case_id: int, reason: str) -> dict[str, Any]:
    rows = await client.get(f"/api/v1/cases/{case_id}/transactions?flagged=false&limit=1")
    txn = rows.json()["items"][0]
    flagged = await client.post(f"/api/v1/transactions/{txn['id']}/flag", json={"reason": reason})
    assert flagged.status_code == 201, flagged.text
    return dict(flagged.json())


async def test_the_report_shows_decisions_consent_audit_and_its_as_of_position(
    casebook_app: FastAPI, login: Login
) -> None:
    services: Services = casebook_app.state.services
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    admin = await login("admin@acme.test")
    patched = await admin.patch("/api/v1/organization", json={"report_footer": FOOTER})
    assert patched.status_code == 200, patched.text
    case_row = (await analyst.get("/api/v1/cases?limit=1")).json()["items"][0]
    case_id = case_row["id"]

    decided = await _flag(analyst, case_id, "round sums to a new payee")
    url = f"/api/v1/adjudication/{decided['id']}"
    assert (await reviewer.post(f"{url}/claim")).status_code == 200
    decision = {"outcome": "suspicious", "reason": "Structured below the 10k threshold"}
    assert (await reviewer.post(f"{url}/decide", json=decision)).status_code == 200
    still_open = await _flag(analyst, case_id, "Counterparty on a watch list")

    today = dt.datetime.now(dt.UTC).date()
    async with services.db.writer() as session:  # consent: revoked, never given, expired
        subjects = (
            await session.scalars(
                select(Subject).where(Subject.case_id == case_id).order_by(Subject.id)
            )
        ).all()
        assert len(subjects) >= 3
        revoked, never, expired = subjects[0], subjects[1], subjects[2]
        await session.execute(
            update(ConsentRecord)
            .where(ConsentRecord.subject_id == revoked.id)
            .values(revoked_on=today - dt.timedelta(days=1))
        )
        await session.execute(
            ConsentRecord.__table__.delete().where(ConsentRecord.subject_id == never.id)
        )
        await session.execute(
            update(ConsentRecord)
            .where(ConsentRecord.subject_id == expired.id)
            .values(revoked_on=None, expires_on=today)
        )
        names = {s.id: s.name for s in subjects}
        records = (
            await session.scalars(
                select(ConsentRecord).where(ConsentRecord.subject_id.in_(list(names)))
            )
        ).all()
        expected = {
            names[sid]: consent_status([r for r in records if r.subject_id == sid], today).value
            for sid in names
        }
        debit = func.sum(
            case((Transaction.direction == Direction.DEBIT, Transaction.amount_cents), else_=0)
        )
        credit = func.sum(
            case((Transaction.direction == Direction.CREDIT, Transaction.amount_cents), else_=0)
        )
        totals = (
            await session.execute(
                select(Transaction.currency, debit, credit)
                .where(Transaction.case_id == case_id)
                .group_by(Transaction.currency)
            )
        ).all()

    pdf = await _render(services, analyst, case_id)
    text = pdf_text(pdf)
    lines = text.splitlines()

    assert case_row["reference"] in text
    assert totals
    for currency, debits, credits in totals:
        assert money(int(debits), currency) in lines
        assert money(int(credits), currency) in lines
        assert "," in money(int(debits), currency) or int(debits) < 100_000
    # The decision: transaction, outcome, reason, reviewer and date; the open item.
    assert "Adjudication decisions (1)" in lines
    assert f"#{decided['transaction_id']} {decided['transaction']['posted_on']}" in lines
    assert "suspicious" in lines
    assert decision["reason"] in lines
    assert f"Rui Reviewer, {dt.datetime.now(dt.UTC).date().isoformat()}" in lines
    assert "Counterparty on a watch list" in lines
    assert f"#{still_open['transaction_id']} {still_open['transaction']['posted_on']}" in lines
    # Consent per subject, as of the report date.
    status = {lines[i]: lines[i + 1] for i in range(len(lines) - 1) if lines[i] in names.values()}
    assert status[names[revoked.id]] == "revoked"
    assert status[names[never.id]] == "none"
    assert status[names[expired.id]] == "expired"
    assert status == expected  # as the API and the UI decide it (casebook.consent)
    # The audit summary: entries per table and action, and the chain's head as read.
    at = lines.index("Audit summary")
    assert lines[at + 1 : at + 4] == ["Table", "Action", "Entries"]
    assert "adjudication_items" in lines[at:]
    head_line = next(line for line in lines if line.startswith("Audit chain head: entry "))
    seq_text, _, head_hash = head_line.removeprefix("Audit chain head: entry ").partition(", hash ")
    seq = int(seq_text.replace(",", ""))
    async with services.db.reader() as session:
        entries = (
            await session.execute(
                select(audit_table.c.seq, audit_table.c.table_name, audit_table.c.changes)
                .add_columns(audit_table.c.hash)
                .where(audit_table.c.chain == "1", audit_table.c.seq.in_([seq, seq + 1]))
                .order_by(audit_table.c.seq)
            )
        ).all()
    # The head as of the snapshot: the report's own row (its job id set), the last write
    # before the job read; the next entry is the report marked ready, after it.
    assert [(e.seq, e.table_name) for e in entries] == [(seq, "reports"), (seq + 1, "reports")]
    assert entries[0].hash == head_hash
    assert '"ready"' in entries[1].changes
    # The footer on every page.
    pages = pdf.count(b"/Type /Page\n") or pdf.count(b"/Type /Page ")
    assert text.count(FOOTER) == max(pages, 1)

    # As of: the cursor printed dates the figures. Everything after it is the report's own
    # completion and what followed; the writes above (the decision, the consent changes,
    # the report row) are all before it.
    token = next(line for line in lines if line.startswith("Cursor: ")).removeprefix("Cursor: ")
    position = next(line for line in lines if line.startswith("Data as of change-feed position"))
    assert str(Cursor.decode(token).position) in position
    after, _ = await ChangeFeed(services.db).since(token)
    tables = {change.table for changeset in after for change in changeset.changes}
    assert "reports" in tables  # ready: after the snapshot
    assert not tables & {"consent_records", "adjudication_items", "organizations"}


def _data(**extra: Any) -> dict[str, Any]:
    categories = [
        {
            "category": f"c{i}",
            "currency": "EUR",
            "count": i,
            "debit_cents": 10**i,
            "credit_cents": 1,
        }
        for i in range(1, 10)
    ]
    return {
        "title": "Case C-1: t",
        "organization": "Acme",
        "footer": "",
        "currency": "EUR",
        "generated_at": "2026-12-06 10:00 UTC",
        "as_of": {"cursor": "x", "position": 1, "at": "2026-12-06 10:00:00 UTC"},
        "case": {"reference": "C-1"},
        "totals": [],
        "categories": categories,
        "months": [
            {
                "month": f"2026-{m:02d}",
                "currency": "USD",
                "debit_cents": 123_456_78,
                "credit_cents": 5,
            }
            for m in range(1, 13)
        ],
        "decisions": [],
        "decisions_total": 0,
        "open_items": [],
        "open_total": 0,
        "consents": [],
        "audit": {"counts": [], "head_seq": 0, "head_hash": ""},
        **extra,
    }


def test_the_by_month_table_reads_black_on_a_light_fill(tmp_path: Path) -> None:
    """Every cell of the By-month table (drawn after the dark bars of the chart) has a
    WCAG AA contrast between its text colour and the fill behind it, as drawn in the PDF."""
    path = tmp_path / "r.pdf"
    render_case_report(_data(), str(path))
    runs = text_runs(path.read_bytes())
    texts = [r.text for r in runs]
    table = runs[texts.index("By month") + 1 : texts.index("Adjudication decisions (0)")]
    assert [r.text for r in table[:4]] == ["Month", "Debits", "Credits", "2026-01"]
    assert "USD 123,456.78" in [r.text for r in table]
    for run in table:
        assert contrast_ratio(run.color, run.background) >= 4.5, run


def test_amounts_carry_thousands_separators_and_their_currency() -> None:
    assert money(123_456_789, "EUR") == "EUR 1,234,567.89"
    assert money(-5, "USD") == "-USD 0.05"
    assert money(0, "GBP") == "GBP 0.00"


def test_an_empty_ledger_totals_zero_in_the_default_currency(tmp_path: Path) -> None:
    path = tmp_path / "r.pdf"
    render_case_report(_data(categories=[], months=[], currency="CHF"), str(path))
    lines = pdf_text(path.read_bytes()).splitlines()
    assert lines[lines.index("Totals") + 5 : lines.index("Totals") + 9] == [
        "CHF",
        "0",
        "CHF 0.00",
        "CHF 0.00",
    ]
