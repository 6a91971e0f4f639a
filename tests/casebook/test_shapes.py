"""``GET /v1/shape`` on casebook through ASGI, both backends: paged snapshots stay one
snapshot across writes, the handle answers for the definition (a migration, a rotation,
compaction: 409 must-refetch), bad input is a 4xx envelope that is never cached."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, insert, select, update

from casebook.models import Case
from lockstep.offline.tables import shape_log

from .conftest import Login


class Mirror:
    """A minimal Electric client: pages, follows offsets, materializes rows by key."""

    def __init__(self, client: httpx.AsyncClient, **params: str) -> None:
        self.client = client
        self.params = {"table": "cases", **params}
        self.offset, self.handle = "-1", ""
        self.rows: dict[str, dict[str, Any]] = {}
        self.up_to_date = False

    async def step(self, live: bool = False) -> httpx.Response:
        query = {**self.params, "offset": self.offset}
        if self.handle:
            query["handle"] = self.handle
        if live:
            query["live"] = "true"
        response = await self.client.get("/v1/shape", params=query)
        if response.status_code == 409:
            self.offset, self.handle, self.rows = "-1", response.headers["electric-handle"], {}
            return response
        assert response.status_code == 200, response.text
        assert response.headers["electric-offset"]
        assert response.headers["electric-handle"]
        self.offset = response.headers["electric-offset"]
        self.handle = response.headers["electric-handle"]
        self.up_to_date = False
        for message in response.json():
            if "key" not in message:
                self.up_to_date |= message["headers"].get("control") == "up-to-date"
                continue
            operation = message["headers"]["operation"]
            if operation == "delete":
                self.rows.pop(message["key"], None)
            else:
                self.rows[message["key"]] = {
                    **self.rows.get(message["key"], {}),
                    **message["value"],
                }
        return response

    async def sync(self) -> None:
        while True:
            await self.step()
            if self.up_to_date:
                return

    def titles(self) -> dict[str, str]:
        return {row["id"]: row["title"] for row in self.rows.values()}


async def titles(app: FastAPI, organization_id: int = 1) -> dict[str, str]:
    async with app.state.services.db.reader() as session:
        rows = await session.execute(
            select(Case.id, Case.title).where(Case.organization_id == organization_id)
        )
        return {str(i): t for i, t in rows}


async def test_a_paged_snapshot_is_one_snapshot_across_writes(
    login: Login, casebook_app: FastAPI
) -> None:
    casebook_app.state.services.offline.endpoint.chunk_rows = 3
    analyst = await login("analyst@acme.test")
    at_start = await titles(casebook_app)
    mirror = Mirror(analyst)
    first = await mirror.step()
    assert "electric-up-to-date" not in first.headers
    assert first.headers["cache-control"].startswith("private, max-age=604800")
    ids = sorted(int(i) for i in at_start)
    db = casebook_app.state.services.db
    async with db.writer() as session:  # rows not paged yet change before they are read
        await session.execute(update(Case).where(Case.id == ids[-1]).values(title="late edit"))
        await session.execute(delete(Case).where(Case.id == ids[-2]))
        await session.execute(update(Case).where(Case.id == ids[-3]).values(organization_id=2))
        await session.execute(
            insert(Case).values(
                id=ids[-1] + 1000,
                organization_id=1,
                reference="LATE",
                title="late insert",
                opened_on=dt.date(2026, 1, 1),
            )
        )
    while not mirror.up_to_date:
        page = await mirror.step()
        if not mirror.up_to_date:
            assert page.headers["cache-control"].startswith("private, max-age=60")
    assert mirror.titles() == at_start  # the snapshot as it was when it began
    await mirror.step()  # then the changes since
    assert mirror.titles() == await titles(casebook_app)


async def test_handles_answer_for_the_definition(login: Login, casebook_app: FastAPI) -> None:
    analyst = await login("analyst@acme.test")
    mirror = Mirror(analyst, where="priority >= 3")
    await mirror.sync()
    other = await analyst.get(
        "/v1/shape",
        params={"table": "cases", "offset": mirror.offset, "handle": mirror.handle},
    )
    assert other.status_code == 409  # the handle of another where
    assert other.json() == [{"headers": {"control": "must-refetch"}}]
    assert other.headers["cache-control"] == "no-store"

    # A migration (a new schema version) makes every handle new: 409, then a refetch.
    offline = casebook_app.state.services.offline
    offline.endpoint.version = "after-a-migration"
    moved = await mirror.step()
    assert moved.status_code == 409
    await mirror.sync()
    assert set(mirror.titles()) <= set(await titles(casebook_app))

    # Compaction past the client's offset: 409 too.
    await analyst.patch("/api/v1/cases/1", json={"title": "compacted away"})
    async with casebook_app.state.services.db.writer() as session:
        await session.execute(
            update(shape_log).values(created_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        )
    assert await offline.compact(older_than=dt.timedelta(days=1)) >= 1
    compacted = await mirror.step()
    assert compacted.status_code == 409


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"table": "users", "offset": "-1"}, 404, "not_found"),
        ({"table": "cases"}, 400, "bad_request"),
        ({"table": "cases", "offset": "12"}, 400, "bad_request"),
        ({"table": "cases", "offset": "3_inf"}, 400, "bad_request"),  # no handle
        ({"table": "cases", "offset": "-1", "columns": "id,password"}, 400, "bad_request"),
        ({"table": "cases", "offset": "-1", "where": "title > 'a'"}, 400, "invalid_where"),
        ({"table": "cases", "offset": "-1", "replica": "half"}, 400, "bad_request"),
        ({"table": "cases", "offset": "-1", "subset__where": "id = 1"}, 400, "bad_request"),
    ],
)
async def test_bad_requests_are_uncached_envelopes(
    login: Login, params: dict[str, str], status: int, code: str
) -> None:
    analyst = await login("analyst@acme.test")
    response = await analyst.get("/v1/shape", params=params)
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["retryable"] is False


async def test_without_a_token_a_shape_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/shape", params={"table": "cases", "offset": "-1"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
