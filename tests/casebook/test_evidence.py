"""Notes and evidence on a case (issue #15): notes with If-Match edits, evidence streamed to
content-addressed files with a server-side SHA-256, downloads that re-check it, hostile
filenames, the size limit, tenant isolation, the append-only chain of custody, tombstones,
and ``casebook evidence verify`` finding a tampered file. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from casebook.evidence import display_name, stored_path
from casebook.models import CustodyEvent, Evidence
from casebook.settings import CasebookSettings

from .conftest import Login

PAYLOAD = b"%PDF-1.4\n" + bytes(range(256)) * 300 + b"\n%%EOF\n"
LIMIT = 100_000


@pytest.fixture
def casebook_settings(casebook_settings: CasebookSettings) -> CasebookSettings:
    """The app's settings with a small evidence size limit."""
    return casebook_settings.model_copy(update={"evidence_max_bytes": LIMIT})


async def _case(client: httpx.AsyncClient) -> int:
    return int((await client.get("/api/v1/cases?limit=1")).json()["items"][0]["id"])


async def _upload(
    client: httpx.AsyncClient,
    case_id: int,
    content: bytes = PAYLOAD,
    filename: str = "statement.pdf",
    content_type: str = "application/pdf",
    **data: str,
) -> httpx.Response:
    return await client.post(
        f"/api/v1/cases/{case_id}/evidence",
        files={"file": (filename, content, content_type)},
        data=data,
    )


async def _custody(client: httpx.AsyncClient, evidence_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/evidence/{evidence_id}/custody")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _stored(app: FastAPI, item: dict[str, Any]) -> Path:
    settings: CasebookSettings = app.state.services.settings
    row = Evidence(id=item["id"], organization_id=1, case_id=item["case_id"], sha256=item["sha256"])
    return stored_path(settings.data_dir, row)


# -- notes --------------------------------------------------------------------------------------


async def test_notes_are_written_read_paged_edited_with_if_match_and_deleted(
    login: Login,
) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    admin = await login("admin@acme.test")
    case_id = await _case(analyst)
    created = []
    for i in range(3):
        response = await analyst.post(f"/api/v1/cases/{case_id}/notes", json={"body": f"n{i}"})
        assert response.status_code == 201, response.text
        assert response.headers["location"] == f"/api/v1/notes/{response.json()['id']}"
        created.append(response.json())
    assert created[0]["author"]["full_name"]
    first = await reviewer.get(f"/api/v1/cases/{case_id}/notes?limit=2")
    assert first.status_code == 200
    assert [n["body"] for n in first.json()["items"]] == ["n2", "n1"]
    second = await reviewer.get(
        f"/api/v1/cases/{case_id}/notes?limit=2&cursor={first.json()['next_cursor']}"
    )
    assert [n["body"] for n in second.json()["items"]] == ["n0"]
    assert second.json()["next_cursor"] is None
    again = await reviewer.get(
        f"/api/v1/cases/{case_id}/notes?limit=2", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304

    # Reviewers read but never write.
    denied = await reviewer.post(f"/api/v1/cases/{case_id}/notes", json={"body": "x"})
    assert denied.status_code == 403
    blank = await analyst.post(f"/api/v1/cases/{case_id}/notes", json={"body": "  "})
    assert blank.status_code == 422

    note = created[0]
    url = f"/api/v1/notes/{note['id']}"
    etag = (await analyst.get(url)).headers["etag"]
    edited = await analyst.patch(url, json={"body": "edited"}, headers={"If-Match": etag})
    assert edited.status_code == 200, edited.text
    assert edited.json()["body"] == "edited"
    assert edited.json()["version"] == note["version"] + 1
    stale = await analyst.patch(url, json={"body": "lost update"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert (await analyst.get(url)).json()["body"] == "edited"
    # The list saw the edit (its cached answer was invalidated).
    listed = (await reviewer.get(f"/api/v1/cases/{case_id}/notes")).json()["items"]
    assert "edited" in [n["body"] for n in listed]

    # Only the author edits; the author or an admin deletes.
    assert (await admin.patch(url, json={"body": "admin's"})).status_code == 403
    other = (await admin.post(f"/api/v1/cases/{case_id}/notes", json={"body": "admin"})).json()
    assert (await analyst.delete(f"/api/v1/notes/{other['id']}")).status_code == 403
    assert (await admin.delete(url)).status_code == 204
    assert (await analyst.get(url)).status_code == 404
    assert (await admin.delete(f"/api/v1/notes/{other['id']}")).status_code == 204


async def test_notes_of_another_organization_are_not_found(login: Login) -> None:
    acme = await login("analyst@acme.test")
    globex = await login("admin@globex.test")
    case_id = await _case(acme)
    note = (await acme.post(f"/api/v1/cases/{case_id}/notes", json={"body": "secret"})).json()
    url = f"/api/v1/notes/{note['id']}"
    for response in (
        await globex.get(url),
        await globex.patch(url, json={"body": "x"}),
        await globex.delete(url),
        await globex.get(f"/api/v1/cases/{case_id}/notes"),
        await globex.post(f"/api/v1/cases/{case_id}/notes", json={"body": "x"}),
    ):
        assert response.status_code == 404, response.text
    assert (await acme.get(url)).json()["body"] == "secret"


# -- evidence -----------------------------------------------------------------------------------


async def test_upload_and_download_round_trip_with_server_side_hash_and_custody(
    casebook_app: FastAPI, login: Login
) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    case_id = await _case(analyst)
    response = await _upload(analyst, case_id, description="bank statement, March")
    assert response.status_code == 201, response.text
    item = response.json()
    assert item["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert item["size_bytes"] == len(PAYLOAD)
    assert item["filename"] == "statement.pdf"
    assert item["content_type"] == "application/pdf"
    assert item["description"] == "bank statement, March"
    assert item["uploaded_by"]["full_name"]
    assert response.headers["location"] == f"/api/v1/evidence/{item['id']}"
    # Stored under its content's hash, nothing named after the client's file.
    path = _stored(casebook_app, item)
    assert path.name == item["sha256"]
    assert path.read_bytes() == PAYLOAD
    settings: CasebookSettings = casebook_app.state.services.settings
    names = [p.name for p in (settings.data_dir / "evidence").rglob("*") if p.is_file()]
    assert names == [item["sha256"]]

    download = await reviewer.get(item["content_url"])
    assert download.status_code == 200
    assert download.content == PAYLOAD
    assert download.headers["etag"] == f'"{item["sha256"]}"'
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"].startswith(
        'attachment; filename="statement.pdf"'
    )
    cached = await reviewer.get(
        item["content_url"], headers={"If-None-Match": download.headers["etag"]}
    )
    assert cached.status_code == 304

    verified = await reviewer.post(f"/api/v1/evidence/{item['id']}/verify")
    assert verified.status_code == 200
    assert verified.json()["verify_status"] == "ok"
    events = await _custody(reviewer, item["id"])
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("uploaded", None),
        ("downloaded", None),
        ("verified", "ok"),
    ]
    assert all(e["sha256"] == item["sha256"] for e in events)
    assert events[1]["user"]["full_name"]
    assert events[1]["actor"].startswith("user:")

    listed = await reviewer.get(f"/api/v1/cases/{case_id}/evidence")
    assert listed.status_code == 200
    assert listed.json()["items"][0]["id"] == item["id"]
    assert (await reviewer.get(f"/api/v1/evidence/{item['id']}")).json()["verify_status"] == "ok"


async def test_a_tampered_file_is_a_recorded_mismatch_and_is_not_served(
    casebook_app: FastAPI, login: Login
) -> None:
    analyst = await login("analyst@acme.test")
    case_id = await _case(analyst)
    item = (await _upload(analyst, case_id)).json()
    path = _stored(casebook_app, item)
    path.write_bytes(PAYLOAD.replace(b"%%EOF", b"%%EOX"))
    verified = await analyst.post(f"/api/v1/evidence/{item['id']}/verify")
    assert verified.status_code == 200
    assert verified.json()["verify_status"] == "mismatch"
    refused = await analyst.get(item["content_url"])
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["expected"] == item["sha256"]
    path.unlink()
    missing = await analyst.post(f"/api/v1/evidence/{item['id']}/verify")
    assert missing.json()["verify_status"] == "missing"
    events = await _custody(analyst, item["id"])
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("uploaded", None),
        ("verified", "mismatch"),
        ("verified", "mismatch"),  # the refused download
        ("verified", "missing"),
    ]
    altered = hashlib.sha256(PAYLOAD.replace(b"%%EOF", b"%%EOX")).hexdigest()
    assert events[1]["sha256"] == altered
    assert events[3]["sha256"] is None
    # Uploading the same content again mends the stored copy.
    again = await _upload(analyst, case_id, filename="copy.pdf")
    assert again.status_code == 201
    assert path.read_bytes() == PAYLOAD
    ok = await analyst.post(f"/api/v1/evidence/{item['id']}/verify")
    assert ok.json()["verify_status"] == "ok"


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\config", "config"),
        ('quote"d\r\nSet-Cookie: x=1.txt', 'quote"dSet-Cookie: x=1.txt'),
        ("r\u00e9sum\u00e9 \u202egnp.exe", "r\u00e9sum\u00e9 gnp.exe"),
        ("..", "evidence"),
        ("/", "evidence"),
        ("\u5831\u544a.pdf", "\u5831\u544a.pdf"),
    ],
)
def test_display_names_are_safe(sent: str, shown: str) -> None:
    assert display_name(sent) == shown


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_hostile_filenames_never_become_paths_or_headers(
    casebook_app: FastAPI, login: Login
) -> None:
    analyst = await login("analyst@acme.test")
    case_id = await _case(analyst)
    settings: CasebookSettings = casebook_app.state.services.settings
    for i, name in enumerate(
        [
            "../../etc/passwd",
            "..\\..\\boot.ini",
            'evil"; filename="x.html',
            "line\r\nbreak.txt",
            "\u00fcber \u202eexe.txt",
            " . ",
        ]
    ):
        content = f"content {i}".encode()
        response = await _upload(analyst, case_id, content, filename=name, content_type="text/html")
        assert response.status_code == 201, (name, response.text)
        item = response.json()
        assert "/" not in item["filename"]
        assert "\\" not in item["filename"]
        assert "\r" not in item["filename"]
        assert "\n" not in item["filename"]
        download = await analyst.get(item["content_url"])
        assert download.content == content
        disposition = download.headers["content-disposition"]
        assert disposition.count('"') == 2, disposition  # the fallback's own quotes only
        assert disposition.startswith("attachment; ")
        assert "\r" not in disposition
        assert "\n" not in disposition
        assert download.headers["x-content-type-options"] == "nosniff"
    assert not (settings.data_dir.parent / "etc").exists()
    stored = [p for p in (settings.data_dir / "evidence").rglob("*") if p.is_file()]
    assert len(stored) == 6
    assert all(len(p.name) == 64 for p in stored)


async def test_the_size_limit_is_a_clear_413_and_leaves_nothing(
    casebook_settings: CasebookSettings, login: Login
) -> None:
    analyst = await login("analyst@acme.test")
    case_id = await _case(analyst)
    response = await _upload(analyst, case_id, b"x" * (LIMIT + 1))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.json()["error"]["details"]["max_bytes"] == LIMIT
    # Far over the limit: refused from its Content-Length, before the body is read.
    early = await _upload(analyst, case_id, b"x" * (LIMIT + 200_000))
    assert early.status_code == 413, early.text
    assert early.json()["error"]["code"] == "payload_too_large"
    assert (await _upload(analyst, case_id, b"x" * LIMIT)).status_code == 201
    stored = [p for p in (casebook_settings.data_dir / "evidence").rglob("*") if p.is_file()]
    assert len(stored) == 1  # the refused upload's partial file is gone
    assert (await _upload(analyst, case_id, b"x", description="d" * 501)).status_code == 422


async def test_the_database_refuses_to_change_a_custody_event(
    casebook_app: FastAPI, login: Login
) -> None:
    analyst = await login("analyst@acme.test")
    item = (await _upload(analyst, await _case(analyst))).json()
    db = casebook_app.state.services.db
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.writer() as session:
            await session.execute(
                update(CustodyEvent)
                .where(CustodyEvent.evidence_id == item["id"])
                .values(sha256="0" * 64)
            )
    events = await _custody(analyst, item["id"])
    assert [e["sha256"] for e in events] == [item["sha256"]]


async def test_roles_tenants_and_tombstones(casebook_app: FastAPI, login: Login) -> None:
    analyst = await login("analyst@acme.test")
    reviewer = await login("reviewer@acme.test")
    admin = await login("admin@acme.test")
    globex = await login("admin@globex.test")
    case_id = await _case(analyst)
    assert (await _upload(reviewer, case_id)).status_code == 403
    item = (await _upload(analyst, case_id)).json()
    twin = (await _upload(analyst, case_id, filename="twin.pdf")).json()
    base = f"/api/v1/evidence/{item['id']}"
    for response in (
        await globex.get(base),
        await globex.get(f"{base}/content"),
        await globex.get(f"{base}/custody"),
        await globex.post(f"{base}/verify"),
        await globex.delete(base),
        await globex.get(f"/api/v1/cases/{case_id}/evidence"),
        await _upload(globex, case_id),
    ):
        assert response.status_code == 404, response.text
    assert (await analyst.delete(base)).status_code == 403
    etag = (await admin.get(base)).headers["etag"]
    assert (await admin.delete(base, headers={"If-Match": '"stale"'})).status_code == 412
    assert (await admin.delete(base, headers={"If-Match": etag})).status_code == 204
    # The twin holds the same content: the file stays for it.
    assert _stored(casebook_app, twin).is_file()
    tombstone = (await reviewer.get(base)).json()
    assert tombstone["deleted_at"] is not None
    assert tombstone["content_url"] is None
    assert (await reviewer.get(f"{base}/content")).status_code == 409
    assert (await reviewer.post(f"{base}/verify")).status_code == 409
    assert (await admin.delete(base)).status_code == 409
    actions = [e["action"] for e in await _custody(reviewer, item["id"])]
    assert actions == ["uploaded", "deleted"]
    assert (await admin.delete(f"/api/v1/evidence/{twin['id']}")).status_code == 204
    assert not _stored(casebook_app, twin).exists()
    # The audit trail saw the writes, as the caller's.
    trail = (await admin.get(f"/api/v1/cases/{case_id}/audit?limit=200")).json()["items"]
    tables = {(e["table"], e["actor"]) for e in trail}
    me = (await admin.get("/api/v1/auth/me")).json()["id"]
    assert ("evidence_custody", f"user:{me}") in tables
    assert ("evidence", f"user:{me}") in tables


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_cli_verify_finds_a_tampered_file_and_exits_1(
    casebook_app: FastAPI, casebook_settings: CasebookSettings, login: Login
) -> None:
    analyst = await login("analyst@acme.test")
    case_id = await _case(analyst)
    good = (await _upload(analyst, case_id, b"good file")).json()
    bad = (await _upload(analyst, case_id, b"bad file")).json()
    env = {
        **os.environ,
        "LOCKSTEP_DATABASE_URL": casebook_settings.database_url,
        "LOCKSTEP_LOG_FORMAT": "console",
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "casebook", "evidence", "verify", "--data-dir"]
    command.append(str(casebook_settings.data_dir))

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *extra], capture_output=True, text=True, env=env, timeout=120, check=False
        )

    clean = run("--case", str(case_id))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 ok, 0 mismatch, 0 missing" in clean.stdout
    _stored(casebook_app, bad).write_bytes(b"bad file, altered")
    tampered = run()
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "1 ok, 1 mismatch, 0 missing" in tampered.stdout
    assert "MISMATCH" in tampered.stdout
    assert "integrity check failed" in tampered.stderr
    assert (await analyst.get(f"/api/v1/evidence/{bad['id']}")).json()["verify_status"] == (
        "mismatch"
    )
    events = await _custody(analyst, bad["id"])
    assert events[-1]["action"] == "verified"
    assert events[-1]["outcome"] == "mismatch"
    assert events[-1]["actor"] == "cli:evidence verify"
    assert (await _custody(analyst, good["id"]))[-1]["outcome"] == "ok"
    unknown = run("--case", "999999")
    assert unknown.returncode == 1
    assert "case 999999 not found" in unknown.stderr
    async with casebook_app.state.services.db.reader() as session:
        rows = (await session.scalars(select(Evidence))).all()
    assert {r.verify_status for r in rows} == {"ok", "mismatch"}
