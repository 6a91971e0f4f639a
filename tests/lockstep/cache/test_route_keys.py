"""The route key holds everything that selects a representation (requirement 21), what the
key could not see is refused when declared, and conditionals answer only the caller's own
representation (requirement 3 / 22)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Cookie, Depends, FastAPI, Header, Query, Request
from sqlalchemy import select

from lockstep import JSONBytesResponse, Lockstep, Table, cached, precondition
from lockstep.changes import Tracking, ensure_change_log
from lockstep.db import Database
from lockstep.exceptions import ConfigurationError, NotFoundError
from lockstep.http import install_observability
from lockstep.http.caching import normalized_query
from lockstep.settings import load_settings

from ..conftest import Base, Folder


@pytest.fixture
async def app(sqlite_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(database_url=sqlite_url, data_dir=tmp_path, env="test")
    db = Database(settings)
    runtime = Lockstep(settings, db, Tracking(Base.metadata), namespace="keys")
    app = FastAPI()
    runtime.install(app)
    async with db.writer_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(ensure_change_log)
    async with db.writer() as session:
        session.add_all([Folder(id=1, org_id=1, name="one"), Folder(id=2, org_id=2, name="two")])

    # Depends on the whole table only: nothing in depends/vary names the path parameter.
    @app.get("/by-org/{org_id}")
    @cached(name="by_org", depends=lambda: [Table("folders")], public=True)
    async def by_org(
        org_id: int, tags: Annotated[list[str] | None, Query()] = None
    ) -> JSONBytesResponse:
        async with db.reader() as session:
            names = list(await session.scalars(select(Folder.name).where(Folder.org_id == org_id)))
        return JSONBytesResponse({"org": org_id, "names": names, "tags": tags})

    @app.get("/folders/{folder_id}")
    @cached(name="folder", depends=lambda: [Table("folders")], vary=lambda x_org: x_org)
    async def folder(folder_id: int, x_org: int = Header(0)) -> JSONBytesResponse:
        async with db.reader() as session:
            found = await session.get(Folder, folder_id)
        if found is None or found.org_id != x_org:
            raise NotFoundError(f"folder {folder_id} not found")
        return JSONBytesResponse({"id": found.id, "name": found.name})

    @app.patch("/folders/{folder_id}")
    @precondition(folder)
    async def rename(folder_id: int, name: str, x_org: int = Header(0)) -> JSONBytesResponse:
        async with db.writer() as session:
            found = await session.get(Folder, folder_id)
            if found is None or found.org_id != x_org:
                raise NotFoundError(f"folder {folder_id} not found")
            found.name = name
        return JSONBytesResponse({"id": folder_id, "name": name})

    @app.post("/folders/{folder_id}/archive")
    @precondition(folder, action="archive")
    async def archive(folder_id: int, x_org: int = Header(0)) -> JSONBytesResponse:
        async with db.writer() as session:
            found = await session.get(Folder, folder_id)
            if found is None or found.org_id != x_org:
                raise NotFoundError(f"folder {folder_id} not found")
            found.name = f"{found.name} (archived)"
        return JSONBytesResponse({"id": folder_id, "name": found.name})

    install_observability(app, settings, database=db, registry=runtime.registry)
    yield app
    await db.dispose()


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_path_parameters_are_in_the_key_whatever_the_route_declares(app: FastAPI) -> None:
    async with _client(app) as client:
        one = await client.get("/by-org/1")
        two = await client.get("/by-org/2")
        assert (one.json()["org"], two.json()["org"]) == (1, 2)
        assert two.headers["x-cache"] == "MISS"
        assert one.headers["etag"] != two.headers["etag"]
        again = await client.get("/by-org/2")
        assert (again.headers["x-cache"], again.json()["org"]) == ("HIT", 2)


async def test_the_query_is_normalized_but_repeated_values_keep_their_order(
    app: FastAPI,
) -> None:
    async with _client(app) as client:
        first = await client.get("/by-org/1?tags=a&tags=b&x=1")
        same = await client.get("/by-org/1?x=1&tags=a&tags=b")
        assert same.headers["x-cache"] == "HIT"
        assert same.headers["etag"] == first.headers["etag"]
        swapped = await client.get("/by-org/1?tags=b&tags=a")
        assert swapped.headers["x-cache"] == "MISS"
        assert swapped.json()["tags"] == ["b", "a"]
    assert normalized_query(b"b=2&a=%2C&a=1") == normalized_query(b"a=,&a=1&b=2")
    assert normalized_query(b"a=1&a=2") != normalized_query(b"a=2&a=1")


async def test_conditionals_answer_only_a_representation_the_caller_may_see(
    app: FastAPI,
) -> None:
    async with _client(app) as client:
        mine = await client.get("/folders/1", headers={"X-Org": "1"})
        etag = mine.headers["etag"]
        assert (
            await client.get("/folders/1", headers={"X-Org": "1", "If-None-Match": etag})
        ).status_code == 304
        assert (
            await client.get("/folders/1", headers={"X-Org": "1", "If-None-Match": "*"})
        ).status_code == 304
        for validator in ("*", etag, '"0123456789abcdef0123456789abcdef"'):
            foreign = await client.get(
                "/folders/1", headers={"X-Org": "2", "If-None-Match": validator}
            )
            assert foreign.status_code == 404, validator
            missing = await client.get(
                "/folders/9", headers={"X-Org": "1", "If-None-Match": validator}
            )
            assert missing.status_code == 404, validator


async def test_a_write_checks_if_match_against_the_get_routes_etag(app: FastAPI) -> None:
    async with _client(app) as client:
        etag = (await client.get("/folders/1?x=1", headers={"X-Org": "1"})).headers["etag"]
        bare = (await client.get("/folders/1", headers={"X-Org": "1"})).headers["etag"]
        assert etag != bare  # another representation (another query): another ETag
        ok = await client.patch("/folders/1?name=uno", headers={"X-Org": "1", "If-Match": bare})
        assert ok.status_code == 200
        late = await client.patch("/folders/1?name=eins", headers={"X-Org": "1", "If-Match": bare})
        assert late.status_code == 412
        assert late.json()["error"]["details"]["etag"] != bare


def test_a_header_outside_the_key_is_refused_when_declared() -> None:
    with pytest.raises(ConfigurationError, match="header x-tenant"):

        @cached(name="h", depends=lambda: [], public=True)
        async def endpoint(x_tenant: str = Header("")) -> JSONBytesResponse:
            raise AssertionError


def test_a_cookie_deep_in_the_dependencies_is_refused_unless_vary_names_it() -> None:
    def session_user(sid: str = Cookie("")) -> str:
        return sid

    def account(user: str = Depends(session_user)) -> str:
        return user

    with pytest.raises(ConfigurationError, match="cookie sid"):

        @cached(name="c", depends=lambda: [], public=True)
        async def endpoint(who: str = Depends(account)) -> JSONBytesResponse:
            raise AssertionError

    @cached(name="c", depends=lambda: [], vary=lambda who: who)
    async def allowed(who: str = Depends(account)) -> JSONBytesResponse:
        raise AssertionError


def test_an_endpoint_reading_the_raw_request_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="raw request"):

        @cached(name="r", depends=lambda: [], public=True)
        async def endpoint(request: Request) -> JSONBytesResponse:
            raise AssertionError


def test_depends_naming_a_parameter_the_endpoint_lacks_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"\['case_id'\]"):

        @cached(name="d", depends=lambda case_id: [], public=True)
        async def endpoint(case: int) -> JSONBytesResponse:
            raise AssertionError


def test_precondition_needs_a_cached_route_and_its_parameters() -> None:
    async def plain(item_id: int) -> JSONBytesResponse:
        raise AssertionError

    with pytest.raises(ConfigurationError, match="@cached GET endpoint"):
        precondition(plain)

    @cached(name="p", depends=lambda item_id: [], public=True)
    async def get_item(item_id: int) -> JSONBytesResponse:
        raise AssertionError

    with pytest.raises(ConfigurationError, match="item_id"):

        @precondition(get_item)
        async def update(other: int) -> JSONBytesResponse:
            raise AssertionError


async def test_an_action_is_compared_with_its_resources_etag(app: FastAPI) -> None:
    """``POST /folders/1/archive`` with ``@precondition(folder, action="archive")``: If-Match
    is the ETag of ``/folders/1``; a stale one is a 412."""
    headers = {"X-Org": "1"}
    async with _client(app) as client:
        etag = (await client.get("/folders/1", headers=headers)).headers["etag"]
        archived = await client.post("/folders/1/archive", headers={**headers, "If-Match": etag})
        assert archived.status_code == 200, archived.text
        stale = await client.post("/folders/1/archive", headers={**headers, "If-Match": etag})
        assert stale.status_code == 412
        current = (await client.get("/folders/1", headers=headers)).headers["etag"]
        assert stale.json()["error"]["details"]["etag"] == current
