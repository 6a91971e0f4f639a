"""Conformance: the real @electric-sql/client (ShapeStream + Shape) and TanStack DB's
Electric collection, in Node, sync a casebook shape from lockstep on SQLite and PostgreSQL:
paged initial sync, up-to-date, live long-polls across 100 concurrent writes (inserts,
updates, deletes, rows moving out of and into the caller's organization) with no row
missed or duplicated, 409 must-refetch recovery, and awaitTxId on a write's
``Lockstep-Txid`` (requirements 5, 7, 8)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update

from casebook.models import Case
from casebook.seed import DEMO_PASSWORD
from lockstep import Database
from lockstep.offline.values import codec_for

from .shape_clients import (
    NodeShapeClient,
    Rows,
    ensure_node_clients,
    serving,
)

COLUMNS = [
    "id", "reference", "title", "description", "status", "priority", "assignee_id",
    "opened_on", "closed_on", "version", "updated_at",
]  # fmt: skip


@pytest.fixture
async def live(casebook_app: FastAPI) -> AsyncIterator[str]:
    ensure_node_clients()
    offline = casebook_app.state.services.offline
    offline.endpoint.chunk_rows = 4  # the initial sync pages
    offline.endpoint.long_poll_seconds = 2.0
    async with serving(casebook_app) as base:
        yield base


async def token(base: str, email: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post(
            "/api/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD}
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


async def expected_cases(db: Database, organization_id: int = 1) -> Rows:
    codecs = {c: codec_for(Case.__table__.c[c]) for c in COLUMNS}
    async with db.reader() as session:
        rows = (
            await session.execute(
                select(*(Case.__table__.c[c] for c in COLUMNS)).where(
                    Case.organization_id == organization_id
                )
            )
        ).mappings()
        return {str(r["id"]): {c: codecs[c].text(r[c]) for c in COLUMNS} for r in rows}


async def hundred_writes(base: str, db: Database, analyst: str, admin: str) -> None:
    """100 concurrent writes: 30 new cases, 40 edits (several to the same case), 10
    deletes, 10 cases moved to another organization and 10 moved in from it."""
    rng = random.Random(17)
    async with db.reader() as session:
        ours = list(await session.scalars(select(Case.id).where(Case.organization_id == 1)))
        theirs = list(await session.scalars(select(Case.id).where(Case.organization_id == 2)))
    rng.shuffle(ours)
    doomed, moved_out, edited = ours[:3], ours[3:6], ours[6:]
    limits = httpx.Limits(max_connections=100)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def create(i: int) -> None:
            response = await client.post(
                "/api/v1/cases",
                json={"reference": f"LIVE-{i:03d}", "title": f"live case {i}"},
                headers={"Authorization": f"Bearer {analyst}"},
            )
            assert response.status_code == 201, response.text

        async def edit(i: int) -> None:
            case_id = edited[i % len(edited)]
            response = await client.patch(
                f"/api/v1/cases/{case_id}",
                json={"title": f"edit {i}", "priority": 1 + i % 5},
                headers={"Authorization": f"Bearer {analyst}"},
            )
            assert response.status_code == 200, response.text

        async def delete(i: int) -> None:
            case_id = doomed[i % len(doomed)]
            response = await client.delete(
                f"/api/v1/cases/{case_id}", headers={"Authorization": f"Bearer {admin}"}
            )
            assert response.status_code in (204, 404), response.text

        async def move(case_id: int, organization_id: int) -> None:
            async with db.writer() as session:
                await session.execute(
                    update(Case).where(Case.id == case_id).values(organization_id=organization_id)
                )

        writes = [create(i) for i in range(30)]
        writes += [edit(i) for i in range(40)]
        writes += [delete(i) for i in range(10)]
        writes += [move(moved_out[i % len(moved_out)], 2) for i in range(10)]
        writes += [move(theirs[i % len(theirs)], 1) for i in range(10)]
        rng.shuffle(writes)
        await asyncio.gather(*writes)


@pytest.mark.parametrize("mode", ["stream", "tanstack"])
async def test_a_real_client_stays_exact_across_100_concurrent_writes_and_a_refetch(
    live: str, casebook_app: FastAPI, mode: str
) -> None:
    db: Database = casebook_app.state.services.db
    analyst = await token(live, "analyst@acme.test")
    admin = await token(live, "admin@acme.test")
    client = await NodeShapeClient.start(f"{live}/v1/shape", analyst, {"table": "cases"}, mode)
    try:
        await client.until_rows(await expected_cases(db))  # the paged initial sync

        await hundred_writes(live, db, analyst, admin)
        await client.until_rows(await expected_cases(db))

        # A write the log cannot name row by row rotates the table: 409, then a refetch.
        async with db.writer() as session:
            await session.execute(text("UPDATE cases SET priority = priority + 1"))
        await client.until_rows(await expected_cases(db))
        if mode == "stream":
            assert any(e["event"] == "must-refetch" for e in client.events)

        # awaitTxId resolves on the txid a write response carries.
        async with httpx.AsyncClient(base_url=live) as http:
            response = await http.patch(
                f"/api/v1/cases/{int(next(iter(client.rows or {})))}",
                json={"title": "awaited"},
                headers={"Authorization": f"Bearer {analyst}"},
            )
        assert response.status_code == 200, response.text
        txid = int(response.headers["Lockstep-Txid"])
        if mode == "tanstack":
            await client.send(f"await {txid}")
            await client.until(lambda e: e["event"] == "txid")
            assert client.events[-1]["ok"] is True, client.events[-1]
        await client.until_rows(await expected_cases(db))
        assert not any(e["event"] == "output" for e in client.events), client.events
    finally:
        await client.close()


async def test_another_organizations_rows_never_reach_a_client(
    live: str, casebook_app: FastAPI
) -> None:
    """Even with a where that asks for them (the scope is ANDed around it)."""
    db: Database = casebook_app.state.services.db
    analyst = await token(live, "analyst@acme.test")
    params = {"table": "cases", "where": "organization_id = 2 OR id > 0"}
    client = await NodeShapeClient.start(f"{live}/v1/shape", analyst, params, "stream")
    try:
        with pytest.raises(AssertionError, match="organization_id"):  # undeclared: a 400
            await client.until(lambda e: e["event"] in ("rows", "error"))
    finally:
        await client.close()
    params = {"table": "cases", "where": "id > $1 OR priority >= $2", "params[1]": "0"}
    async with httpx.AsyncClient(base_url=live) as http:
        bad = await http.get(
            "/v1/shape",
            params={**params, "offset": "-1"},
            headers={"Authorization": f"Bearer {analyst}"},
        )
    assert bad.status_code == 400
    assert bad.headers["cache-control"] == "no-store"
    assert bad.json()["error"]["retryable"] is False
    client = await NodeShapeClient.start(
        f"{live}/v1/shape",
        analyst,
        {"table": "cases", "where": "id > $1 OR priority >= $2", "params": ["0", "1"]},
        "stream",
    )
    try:
        await client.until_rows(await expected_cases(db))
    finally:
        await client.close()
