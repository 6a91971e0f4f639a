"""casebook's audit trail (issue #15): every write recorded with who and before/after, per
case and per user, exported as CSV, verifiable, and a tampered entry found."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update
from typer.testing import CliRunner

from casebook.cli import app as casebook_cli
from casebook.imports import fail_import
from casebook.models import Case
from casebook.seed import seed
from casebook.services import MIGRATIONS, lockstep_app
from casebook.settings import CasebookSettings
from lockstep import Database, acting_as, load_settings, upgrade
from lockstep.audit import audit_table, verify_chains
from lockstep.cli.root import app as lockstep_cli

from .conftest import Login


async def _me(client: httpx.AsyncClient) -> int:
    return int((await client.get("/api/v1/auth/me")).json()["id"])


async def _flagged_item(analyst: httpx.AsyncClient) -> dict[str, Any]:
    case = (await analyst.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    txn = (await analyst.get(f"/api/v1/cases/{case}/transactions?flagged=false&limit=1")).json()
    response = await analyst.post(
        f"/api/v1/transactions/{txn['items'][0]['id']}/flag", json={"reason": "round sums"}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _entries(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    """Every entry of a paginated audit URL (5 a page), newest first."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        response = await client.get(url, params=params)
        assert response.status_code == 200, response.text
        found.extend(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found


async def test_a_flag_claim_and_decision_are_audited_with_who_and_before_after(
    login: Login,
) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    item = await _flagged_item(analyst)
    url = f"/api/v1/adjudication/{item['id']}"
    assert (await reviewer.post(f"{url}/claim")).status_code == 200
    decided = await reviewer.post(f"{url}/decide", json={"outcome": "suspicious", "reason": "r"})
    assert decided.status_code == 200
    entries = await _entries(analyst, f"/api/v1/cases/{item['case_id']}/audit")
    mine = [e for e in entries if e["table"] == "adjudication_items"]
    mine = [e for e in mine if e["row_key"] == str(item["id"])]
    assert [e["op"] for e in mine] == ["update", "update", "insert"]  # newest first
    decision, claim, flag = mine
    analyst_id, reviewer_id = await _me(analyst), await _me(reviewer)
    assert flag["actor"] == f"user:{analyst_id}"
    assert flag["changes"]["reason"] == [None, "round sums"]
    assert flag["changes"]["case_id"] == [None, item["case_id"]]
    assert claim["actor"] == decision["actor"] == f"user:{reviewer_id}"
    assert claim["changes"]["assignee_id"] == [None, reviewer_id]
    assert claim["changes"]["claimed_until"][0] is None
    assert claim["changes"]["claimed_until"][1]
    assert "version" not in claim["changes"]  # ignored column
    assert decision["changes"]["status"] == ["pending", "decided"]
    assert decision["changes"]["outcome"] == [None, "suspicious"]
    assert decision["changes"]["decision_reason"] == [None, "r"]
    assert decision["changes"]["assignee_id"] == [reviewer_id, None]
    # The flag also marked the transaction: the same request's entry, same actor.
    txn = [
        e
        for e in entries
        if e["table"] == "transactions" and e["row_key"] == str(item["transaction_id"])
    ]
    assert txn[-1]["changes"]["flagged"] == [False, True]
    assert txn[-1]["actor"] == f"user:{analyst_id}"
    # Seqs of the organization's chain increase with the entries.
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs, reverse=True)
    assert {e["chain"] for e in entries} == {"1"}


async def test_case_audit_covers_the_case_and_its_rows_even_deleted_ones(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    case = (
        await analyst.post("/api/v1/cases", json={"reference": "AUD-1", "title": "Audited"})
    ).json()
    url = f"/api/v1/cases/{case['id']}"
    assert (await analyst.patch(url, json={"title": "Audited again"})).status_code == 200
    subject = (await analyst.post(f"{url}/subjects", json={"kind": "person", "name": "S"})).json()
    assert (await analyst.delete(f"/api/v1/subjects/{subject['id']}")).status_code == 204
    entries = await _entries(analyst, f"{url}/audit")
    summary = [(e["table"], e["op"]) for e in entries]
    assert summary == [
        ("subjects", "delete"),
        ("subjects", "insert"),
        ("cases", "update"),
        ("cases", "insert"),
    ]
    assert entries[2]["changes"] == {"title": ["Audited", "Audited again"]}
    assert entries[0]["changes"]["name"] == ["S", None]
    # Another case's entries are not in it.
    other = (await analyst.get("/api/v1/cases?limit=2")).json()["items"][1]["id"]
    assert not {e["id"] for e in entries} & {
        e["id"] for e in await _entries(analyst, f"/api/v1/cases/{other}/audit")
    }


async def test_case_audit_holds_the_accounts_and_consent_its_subjects_hold(login: Login) -> None:
    """Accounts and consent records carry no case id: their subject places them."""
    analyst = await login("analyst@acme.test")
    case = (await analyst.post("/api/v1/cases", json={"reference": "AUD-2", "title": "T"})).json()
    url = f"/api/v1/cases/{case['id']}"
    subject = (await analyst.post(f"{url}/subjects", json={"kind": "person", "name": "S"})).json()
    held = f"/api/v1/subjects/{subject['id']}"
    account = await analyst.post(
        f"{held}/accounts", json={"institution": "Bank", "identifier": "12345678"}
    )
    assert account.status_code == 201, account.text
    consent = await analyst.post(
        f"{held}/consents", json={"purpose": "audit test", "granted_on": "2026-01-02"}
    )
    assert consent.status_code == 201, consent.text
    entries = await _entries(analyst, f"{url}/audit")
    assert [(e["table"], e["op"]) for e in entries[:2]] == [
        ("consent_records", "insert"),
        ("accounts", "insert"),
    ]
    assert entries[0]["changes"]["purpose"] == [None, "audit test"]


async def test_user_audit_is_for_admins_and_lists_that_users_writes(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    admin = await login("admin@acme.test")
    reviewer = await login("reviewer@acme.test")
    await _flagged_item(analyst)
    analyst_id = await _me(analyst)
    url = f"/api/v1/users/{analyst_id}/audit"
    assert (await analyst.get(url)).status_code == 403
    assert (await reviewer.get(url)).status_code == 403
    entries = await _entries(admin, url)
    assert entries
    assert {e["actor"] for e in entries} == {f"user:{analyst_id}"}
    # Another organization's user, and a user that does not exist: the same 404.
    globex_admin = await login("admin@globex.test")
    foreign = await globex_admin.get(url)
    missing = await globex_admin.get("/api/v1/users/2000000000/audit")
    assert foreign.status_code == missing.status_code == 404


async def test_another_tenants_case_audit_is_404(login: Login) -> None:
    acme = await login("analyst@acme.test")
    case = (await acme.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    globex = await login("analyst@globex.test")
    for suffix in ("audit", "audit.csv"):
        foreign = await globex.get(f"/api/v1/cases/{case}/{suffix}")
        missing = await globex.get(f"/api/v1/cases/2000000000/{suffix}")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"]["code"] == missing.json()["error"]["code"]


async def test_the_csv_export_escapes_formulas(login: Login) -> None:
    analyst = await login("analyst@acme.test")
    case = (
        await analyst.post(
            "/api/v1/cases", json={"reference": "AUD-CSV", "title": '=HYPERLINK("x","y")'}
        )
    ).json()
    url = f"/api/v1/cases/{case['id']}"
    assert (await analyst.patch(url, json={"title": "@SUM(A1)", "priority": 1})).is_success
    response = await analyst.get(f"{url}/audit.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [
        "seq", "at", "actor", "table", "row_key", "op", "field", "before", "after", "hash"
    ]  # fmt: skip
    titles = [r for r in rows[1:] if r[6] == "title"]
    assert [(r[5], r[7], r[8]) for r in titles] == [
        ("insert", "", '\'=HYPERLINK("x","y")'),
        ("update", '\'=HYPERLINK("x","y")', "'@SUM(A1)"),
    ]
    priority = next(r for r in rows[1:] if r[6] == "priority" and r[5] == "update")
    assert (priority[7], priority[8]) == ("3", "1")


async def test_tampering_with_an_entry_breaks_the_chain(
    casebook_app: FastAPI, login: Login
) -> None:
    analyst = await login("analyst@acme.test")
    await _flagged_item(analyst)
    db = casebook_app.state.services.db
    reports = await verify_chains(db)
    assert reports
    assert all(r.ok for r in reports)
    async with db.reader() as session:
        first = await session.scalar(
            select(audit_table.c.id).where(audit_table.c.chain == "1").order_by(audit_table.c.id)
        )
    async with db.writer() as session:  # a raw UPDATE, as someone with database access
        await session.execute(
            update(audit_table)
            .where(audit_table.c.id == first)
            .values(changes='{"reason":[null,"nothing to see"]}')
        )
    broken = {r.chain: r for r in await verify_chains(db)}["1"]
    assert not broken.ok
    assert broken.broken is not None
    assert broken.broken.seq == 1


def test_audit_verify_on_the_command_line(tmp_path: Path) -> None:
    """``casebook audit verify`` and ``lockstep --app casebook.services:lockstep_app audit
    verify``: 0 on an intact trail, 1 naming the chain once an entry is altered."""
    settings = load_settings(CasebookSettings, data_dir=tmp_path, slow_query_ms=0)

    async def prepare() -> None:
        db = Database(settings)
        try:
            await upgrade(db, MIGRATIONS)
            await seed(db, transactions=50)
        finally:
            await db.dispose()
        view = lockstep_app(data_dir=tmp_path)  # a casebook process: the trail installed
        try:
            with acting_as("cli:test"):
                async with view.database.writer() as session:
                    await session.execute(update(Case).where(Case.id == 1).values(priority=1))
                    case = await session.get(Case, 2)
                    assert case is not None
                    case.title = "retitled"
        finally:
            await view.database.dispose()

    asyncio.run(prepare())
    where = ["--data-dir", str(tmp_path)]
    runner = CliRunner()
    for cli, args in (
        (casebook_cli, ["audit", "verify", "--json", *where]),
        (lockstep_cli, ["--app", "casebook.services:lockstep_app", "audit", "verify", *where]),
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    reports = json.loads(runner.invoke(casebook_cli, ["audit", "verify", "--json", *where]).output)
    # The ORM write is in its organization's chain; the UPDATE ... WHERE names no
    # organization: it is in the global chain.
    assert [(r["chain"], r["entries"], r["ok"]) for r in reports] == [
        ("*", 1, True),
        ("1", 1, True),
    ]
    with sqlite3.connect(tmp_path / "casebook.db") as raw:
        raw.execute("UPDATE lockstep_audit SET actor = 'someone else' WHERE chain = '1'")
    for cli, args in (
        (casebook_cli, ["audit", "verify", *where]),
        (lockstep_cli, ["--app", "casebook.services:lockstep_app", "audit", "verify", *where]),
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert "BROKEN at 1" in result.output


async def test_an_import_through_the_api_is_audited_as_its_job(login: Login, worker: None) -> None:
    """The upload is the user's write; the rows are the job's: one summary entry."""
    analyst = await login("analyst@acme.test")
    case = (await analyst.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    statement = (
        b"date,amount,direction,category\n"
        + b"".join(f"2026-01-{day:02d},{day}.50,debit,fees\n".encode() for day in range(1, 29)) * 5
    )
    created = await analyst.post(
        f"/api/v1/cases/{case}/imports",
        files={"file": ("s.csv", statement, "text/csv")},
        headers={"Prefer": "wait=60"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["rows_imported"] == 140
    entries = await _entries(analyst, f"/api/v1/cases/{case}/audit")
    record = [e for e in entries if e["table"] == "imports"]
    assert record[-1]["op"] == "insert"
    assert record[-1]["actor"] == f"user:{await _me(analyst)}"
    rows = [e for e in entries if e["table"] == "transactions" and e["op"] == "insert"]
    assert rows[0]["changes"] == {"rows": 140}
    assert rows[0]["actor"] == "job:casebook.imports.run"


async def test_an_import_marked_failed_is_in_its_organizations_chain(
    casebook_app: FastAPI, login: Login
) -> None:
    """fail_import writes the record (not an UPDATE ... WHERE), so the entry carries its
    organization and shows in the case's audit with the status change."""
    analyst = await login("analyst@acme.test")
    case = (await analyst.get("/api/v1/cases?limit=1")).json()["items"][0]["id"]
    queued = await analyst.post(
        f"/api/v1/cases/{case}/imports",
        files={"file": ("q.csv", b"date,amount,direction,category\n2026-01-02,1.00,debit,x\n")},
    )
    assert queued.status_code == 202, queued.text  # no worker here: it stays queued
    await fail_import(casebook_app.state.services.db, queued.json()["id"], "its job was lost")
    entries = await _entries(analyst, f"/api/v1/cases/{case}/audit")
    failed = [e for e in entries if e["table"] == "imports" and e["op"] == "update"]
    assert failed, entries
    assert failed[0]["changes"]["status"] == ["queued", "failed"]
