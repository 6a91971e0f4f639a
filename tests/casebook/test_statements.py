"""Bank statements through casebook's API and CLI: the corpus imports as downloaded (exact
counts, signed totals, dates); preview and questions; profiles answer once per bank; the
forensic checks (a re-export's overlap imports once, repeats inside one file all import,
running-balance breaks are reported); bad answers are a 4xx, never a 500."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import case, func, select
from typer.testing import CliRunner

from casebook.cli import app as casebook_cli
from casebook.models import ImportRecord, Transaction
from casebook.seed import seed
from casebook.services import MIGRATIONS
from casebook.settings import CasebookSettings
from lockstep import Database, load_settings, upgrade

from .conftest import Login
from .test_imports import WAIT, case_of, upload

CORPUS = Path(__file__).parents[1] / "corpus"
with (CORPUS / "corpus.toml").open("rb") as _handle:
    ENTRIES: list[dict[str, Any]] = tomllib.load(_handle)["statement"]


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrated, seeded SQLite data directory for ``casebook`` commands run in-process."""
    monkeypatch.setenv("LOCKSTEP_LOG_FORMAT", "console")

    async def prepare() -> None:
        db = Database(load_settings(CasebookSettings, data_dir=tmp_path, slow_query_ms=0))
        try:
            await upgrade(db, MIGRATIONS)
            await seed(db, transactions=200)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    return tmp_path


def answered(entry: dict[str, Any]) -> dict[str, list[str]]:
    return {"map": [f"{k}={v}" for k, v in entry["answers"].items()]}


async def stored(db: Database, import_id: int) -> tuple[int, int, str, str]:
    """Count, signed total and first/last booking date of an import's ledger rows."""
    t = Transaction
    signed = func.sum(case((t.direction == "debit", -t.amount_cents), else_=t.amount_cents))
    async with db.reader() as s:
        count, total, first, last = (
            await s.execute(
                select(func.count(), signed, func.min(t.posted_on), func.max(t.posted_on)).where(
                    t.import_id == import_id
                )
            )
        ).one()
    return int(count), int(total or 0), str(first), str(last)


async def test_the_corpus_imports_as_downloaded_through_the_api(
    login: Login, casebook_app: FastAPI, worker: None
) -> None:
    db = casebook_app.state.services.db
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    url = f"/api/v1/cases/{case_id}/imports"
    for entry in ENTRIES:
        content = (CORPUS / entry["file"]).read_bytes()
        if entry.get("asks"):
            asked = await client.post(url, files=upload(content, entry["file"]), headers=WAIT)
            assert asked.status_code == 422, entry["file"]
            keys = [q["key"] for q in asked.json()["error"]["details"]["questions"]]
            assert keys == entry["asks"]
        response = await client.post(
            url, files=upload(content, entry["file"]), headers=WAIT, params=answered(entry)
        )
        assert response.status_code == 201, (entry["file"], response.text)
        body = response.json()
        assert body["rows_imported"] == entry["rows"], entry["file"]
        assert await stored(db, body["id"]) == (
            entry["rows"],
            entry["total_cents"],
            entry["first"],
            entry["last"],
        ), entry["file"]
        findings = body["findings"]
        assert findings["no_movement"]["count"] == entry["no_movement"]
        assert findings["balance"]["breaks"] == 0, entry["file"]
        assert findings["overlap"]["count"] == 0, entry["file"]
        if "account" in entry:
            assert body["account"] == entry["account"]


def test_the_corpus_imports_as_downloaded_through_the_cli(
    cli_database: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    for number, entry in enumerate(ENTRIES):
        path = CORPUS / entry["file"]
        maps = [arg for k, v in entry["answers"].items() for arg in ("--map", f"{k}={v}")]
        command = ["import", str(path), "--case", str(1 + number % 5), *maps]
        result = runner.invoke(casebook_cli, [*command, "--data-dir", str(cli_database)])
        assert result.exit_code == 0, (entry["file"], result.output)
        assert f"{entry['rows']} transactions imported" in result.output, result.output


def dkb(iban: str, rows: list[tuple[str, str, str]]) -> bytes:
    """A statement in DKB's export format: (date, payee, amount) rows, newest first."""
    lines = [
        f'"Girokonto";"{iban}"',
        '""',
        '"Buchungsdatum";"Wertstellung";"Status";"Zahlungspflichtige*r";'
        '"Zahlungsempfänger*in";"Verwendungszweck";"Umsatztyp";"IBAN";"Betrag (€)";'
        '"Gläubiger-ID";"Mandatsreferenz";"Kundenreferenz"',
    ]
    for day, payee, amount in rows:
        lines.append(
            f'"{day}";"{day}";"Gebucht";"Max Mustermann";"{payee}";"";"Ausgang";"";'
            f'"{amount}";"";"";""'
        )
    return ("\r\n".join(lines) + "\r\n").encode("utf-8-sig")


JANUARY = [
    ("15.01.26", "Stadtwerke", "-80,00"),
    ("10.01.26", "BVG Tram", "-2,90"),
    ("10.01.26", "BVG Tram", "-2,90"),  # the ride back: a repeat, not a duplicate
    ("08.01.26", "Bäckerei", "-3,20"),
    ("02.01.26", "ACME GmbH", "2.500,00"),
]
RE_EXPORT = [
    ("20.01.26", "Buchhandlung", "-19,99"),
    ("15.01.26", "Stadtwerke", "-80,00"),
    ("10.01.26", "BVG Tram", "-2,90"),
    ("10.01.26", "BVG Tram", "-2,90"),
    ("10.01.26", "BVG Tram", "-2,90"),  # a third ride that day, booked after the first export
    ("08.01.26", "Bäckerei", "-3,20"),
]


async def test_repeats_in_one_file_all_import_and_a_re_exports_overlap_imports_once(
    login: Login, casebook_app: FastAPI, worker: None
) -> None:
    db = casebook_app.state.services.db
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    url = f"/api/v1/cases/{case_id}/imports"
    iban = "DE02120300000000202051"
    first = await client.post(url, files=upload(dkb(iban, JANUARY), "jan.csv"), headers=WAIT)
    assert first.status_code == 201, first.text
    assert first.json()["rows_imported"] == 5  # both tram rides
    second = await client.post(url, files=upload(dkb(iban, RE_EXPORT), "re.csv"), headers=WAIT)
    assert second.status_code == 201, second.text
    body = second.json()
    assert body["rows_imported"] == 2  # the bookshop and the third tram ride
    overlap = body["findings"]["overlap"]
    assert overlap["count"] == 4
    assert sorted((row["date"], row["amount_cents"]) for row in overlap["rows"]) == [
        ("2026-01-08", -320),
        ("2026-01-10", -290),
        ("2026-01-10", -290),
        ("2026-01-15", -8000),
    ]
    assert "4 already imported from an overlapping statement" in body["message"]
    async with db.reader() as s:
        rides = await s.scalar(
            select(func.count()).where(
                Transaction.case_id == case_id, Transaction.counterparty == "BVG Tram"
            )
        )
    assert rides == 3
    # Another account's statement with the same rows is its own: nothing overlaps.
    other = await client.post(
        url, files=upload(dkb("DE89370400440532013000", RE_EXPORT), "other.csv"), headers=WAIT
    )
    assert other.status_code == 201, other.text
    assert other.json()["rows_imported"] == 6


def gls(rows: list[tuple[str, str, str]]) -> bytes:
    """GLS/Volksbank format with its running balance: (date, amount, balance) rows."""
    head = (
        "Bezeichnung Auftragskonto;IBAN Auftragskonto;Buchungstag;Valutadatum;"
        "Name Zahlungsbeteiligter;Verwendungszweck;Betrag;Waehrung;Saldo nach Buchung"
    )
    body = [
        f"Konto;DE43430609671234567800;{d};{d};Partei {i};Zweck {i};{a};EUR;{b}"
        for i, (d, a, b) in enumerate(rows)
    ]
    return ("\n".join([head, *body]) + "\n").encode()


async def test_a_doctored_amount_shows_as_running_balance_breaks(
    login: Login, casebook_app: FastAPI, worker: None
) -> None:
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    honest = [
        ("17.12.2025", "-520,00", "2.764,28"),
        ("16.12.2025", "-42,24", "3.284,28"),
        ("15.12.2025", "1.284,00", "3.326,52"),
        ("15.12.2025", "-36,00", "2.042,52"),
    ]
    doctored = list(honest)
    doctored[1] = ("16.12.2025", "-4,24", "3.284,28")  # 42,24 made 4,24 (balances untouched)
    url = f"/api/v1/cases/{case_id}/imports"
    clean = await client.post(url, files=upload(gls(honest), "a.csv"), headers=WAIT)
    assert clean.status_code == 201, clean.text
    assert clean.json()["findings"]["balance"]["breaks"] == 0
    found = await client.post(url, files=upload(gls(doctored), "b.csv"), headers=WAIT)
    assert found.status_code == 201, found.text  # imported, and the breaks reported
    balance = found.json()["findings"]["balance"]
    assert balance["order"] == "newest_first"
    assert balance["breaks"] >= 1
    assert {row["line"] for row in balance["rows"]} <= {3, 4}
    assert "running-balance breaks" in found.json()["message"]


AMEX = CORPUS / "us-amex.csv"


async def test_preview_then_a_saved_profile_answers_the_next_file_of_the_bank(
    login: Login, casebook_app: FastAPI, worker: None
) -> None:
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    preview = await client.post(
        f"/api/v1/cases/{case_id}/imports/preview", files=upload(AMEX.read_bytes(), "amex.csv")
    )
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert [q["key"] for q in shown["questions"]] == ["sign"]
    assert shown["mapping"]["columns"] == {
        "booking_date": "Date",
        "description": "Description",
        "amount": "Amount",
    }
    assert shown["rows"][0]["values"]["amount"] == 2317
    url = f"/api/v1/cases/{case_id}/imports"
    params = {"map": ["sign=inverted", "currency=USD", "counterparty=Description"],
              "save_profile": "Amex card"}  # fmt: skip
    saved = await client.post(url, files=upload(AMEX.read_bytes()), headers=WAIT, params=params)
    assert saved.status_code == 201, saved.text
    assert saved.json()["mapping"]["columns"]["counterparty"] == "Description"
    profiles = (await client.get("/api/v1/import-profiles")).json()["items"]
    assert [(p["name"], p["settings"]["sign"]) for p in profiles] == [("Amex card", "inverted")]
    # November's statement of the same card: no questions, the profile's answers.
    november = b"Date,Description,Amount\n11/03/2025,UBER TRIP,12.40\n11/09/2025,PAYMENT,-50.00\n"
    again = await client.post(url, files=upload(november, "nov.csv"), headers=WAIT)
    assert again.status_code == 201, again.text
    assert again.json()["rows_imported"] == 2
    assert again.json()["mapping"]["sign"] == "inverted"
    # Another organization's files know nothing of it.
    other = await login("analyst@globex.test")
    assert (await other.get("/api/v1/import-profiles")).json()["items"] == []


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        # Outside the grammar the OpenAPI document declares for an answer (its pattern).
        ({"map": "nonsense"}, 422, "string_pattern_mismatch"),
        ({"map": "date_order=ydm"}, 422, "string_pattern_mismatch"),
        ({"map": "colour=red"}, 422, "string_pattern_mismatch"),
        # Inside it, but not what this file has.
        ({"map": "amount=No Such Column"}, 422, "has no column 'No Such Column'"),
        ({"map": "currency=Euro"}, 422, "a column or a 3-letter currency code"),
        ({"profile": "nobody"}, 404, "no import profile named 'nobody'"),
    ],
)
async def test_bad_answers_are_a_4xx_with_the_reason(
    login: Login, casebook_app: FastAPI, params: dict[str, str], status: int, says: str
) -> None:
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    for path in ("imports", "imports/preview"):
        response = await client.post(
            f"/api/v1/cases/{case_id}/{path}", files=upload(AMEX.read_bytes()), params=params
        )
        assert response.status_code == status, response.text
        error = response.json()["error"]
        if says == "string_pattern_mismatch":
            assert [(d["loc"][:2], d["type"]) for d in error["details"]] == [
                (["query", "map"], says)
            ]
        else:
            assert says in error["message"]
    assert (await client.get(f"/api/v1/cases/{case_id}/imports")).json()["items"] == []


async def test_not_a_statement_is_a_422_never_a_500(login: Login, casebook_app: FastAPI) -> None:
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    for content in (
        b"\x00\x01\x02binary",
        b'Date,Amount\n2026-01-01,5\n"' + b"x" * 200_000 + b'",6\n',  # over csv's field limit
        b"just one line without delimiters\n",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>",
        b"<?xml version='1.0'?><Document><broken>",
        b"OFXHEADER:100\n<NOT-OFX>",
        b":20:X\n:25:Y\n:61:garbage\n",
        b"!Type:Bank\nD01/02/2026\nT-5",
        b"",
    ):
        response = await client.post(
            f"/api/v1/cases/{case_id}/imports/preview", files=upload(content)
        )
        assert 400 <= response.status_code < 500, (content, response.text)


async def test_an_import_queued_before_statements_were_surveyed_is_surveyed_by_its_job(
    login: Login, casebook_app: FastAPI
) -> None:
    services = casebook_app.state.services
    client = await login("analyst@acme.test")
    case_id = await case_of(client)
    content = (CORPUS / "de-dkb.csv").read_bytes()
    queued = (await client.post(f"/api/v1/cases/{case_id}/imports", files=upload(content))).json()
    async with services.db.writer() as session:  # as 0006 leaves an import queued before it
        record = await session.get(ImportRecord, queued["id"])
        assert record is not None
        record.mapping = ""
    async with services.worker(poll_interval=0.05, lease=30), asyncio.timeout(60):
        result = await services.jobs.result(queued["job_id"])
    assert (result["status"], result["rows_imported"]) == ("imported", 4)
