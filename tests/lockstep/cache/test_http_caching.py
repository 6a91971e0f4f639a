"""HTTP caching on a small app: requirements 1, 2, 10, 12, 14 and 18 of cache-http.md."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI, Header
from starlette.types import Scope

from lockstep import JSONBytesResponse, Lockstep, Row, Settings, cached, install_observability
from lockstep.changes import Tracking, ensure_change_log
from lockstep.db import Database
from lockstep.exceptions import ConfigurationError, NotFoundError, PermissionDeniedError
from lockstep.settings import load_settings

from ..conftest import Base, Folder

AppFactory = Callable[..., FastAPI]


async def identify_by_headers(scope: Scope) -> Hashable | None:
    """The caller as the test's requests name it (a coroutine, as hooks may be)."""
    headers = dict(scope["headers"])
    user = headers.get(b"x-user")
    return None if user is None else (user, headers.get(b"x-role", b"analyst"))


def build_app(settings: Settings) -> FastAPI:
    db = Database(settings)
    calls: list[str] = []

    def count_call() -> None:
        calls.append("dependency")

    def admin(
        x_user: str = Header("anon"), x_role: str = Header("analyst"), x_org: str = Header("1")
    ) -> tuple[str, str, str]:
        calls.append("admin check")
        if x_role != "admin":
            raise PermissionDeniedError("admins only")
        return (x_user, x_role, x_org)

    runtime = Lockstep(
        settings,
        db,
        Tracking(Base.metadata, scopes=["org_id"]),
        namespace="t",
        identify=identify_by_headers,
    )
    app = FastAPI(lifespan=runtime.lifespan)
    runtime.install(app)
    install_observability(app, settings, database=db, registry=runtime.registry)

    @app.get("/folders/{folder_id}")
    @cached(
        name="folder",
        depends=lambda folder_id: [Row("folders", folder_id)],
        vary=lambda x_user: x_user,
        cache_control="api_short",
    )
    async def get_folder(folder_id: int, x_user: str = Header("anon")) -> JSONBytesResponse:
        async with db.reader() as s:
            folder = await s.get(Folder, folder_id)
        if folder is None:
            raise NotFoundError("no such folder")
        return JSONBytesResponse(
            {"id": folder.id, "name": folder.name},
            headers={"Location": f"/folders/{folder_id}", "X-Secret": "x"},
        )

    @app.get("/public/folders/{folder_id}")
    @cached(
        name="public_folder", public=True, depends=lambda folder_id: [Row("folders", folder_id)]
    )
    async def public_folder(
        folder_id: int, counted: None = Depends(count_call)
    ) -> JSONBytesResponse:
        async with db.reader() as s:
            folder = await s.get(Folder, folder_id)
        if folder is None:
            raise NotFoundError("no such folder")
        return JSONBytesResponse({"id": folder.id, "name": folder.name})

    @app.get("/admin/folders/{folder_id}")
    @cached(
        name="admin_folder",
        depends=lambda folder_id: [Row("folders", folder_id)],
        vary=lambda caller: caller[2],  # one value for the organization's admins
    )
    async def admin_folder(
        folder_id: int, caller: tuple[str, str, str] = Depends(admin)
    ) -> JSONBytesResponse:
        async with db.reader() as s:
            folder = await s.get(Folder, folder_id)
        if folder is None:
            raise NotFoundError("no such folder")
        return JSONBytesResponse({"id": folder.id, "name": folder.name})

    @app.post("/folders/{folder_id}")
    async def rename(folder_id: int, name: str) -> JSONBytesResponse:
        async with db.writer() as s:
            folder = await s.get(Folder, folder_id)
            assert folder is not None
            folder.name = name
        return JSONBytesResponse({"ok": True})

    app.state.db = db
    app.state.calls = calls
    return app


@pytest.fixture
async def make_app(database_url: str, tmp_path: Path) -> AsyncIterator[AppFactory]:
    apps: list[FastAPI] = []
    prepared = False

    def make(**overrides: object) -> FastAPI:
        settings = load_settings(
            database_url=database_url,
            data_dir=tmp_path,
            env="test",
            access_log=False,
            log_format="console",
            **overrides,
        )
        app = build_app(settings)
        apps.append(app)
        return app

    async def prepare(app: FastAPI) -> None:
        nonlocal prepared
        if not prepared:
            async with app.state.db.writer_engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
                await conn.run_sync(ensure_change_log)
            async with app.state.db.writer() as s:
                s.add(Folder(id=1, org_id=1, name="one"))
            prepared = True

    make.prepare = prepare  # type: ignore[attr-defined]
    yield make
    for app in apps:
        await app.state.lockstep.stop()
        await app.state.db.dispose()


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_a_cached_route_must_declare_whose_data_it_is() -> None:
    with pytest.raises(ConfigurationError, match="vary"):
        cached(depends=lambda: [])


async def test_etags_agree_across_processes_and_restarts(
    make_app: AppFactory, redis_url: str
) -> None:
    first = make_app(redis_url=redis_url)
    await make_app.prepare(first)  # type: ignore[attr-defined]
    await first.state.lockstep.start()
    second = make_app(redis_url=redis_url)
    await second.state.lockstep.start()
    async with _client(first) as a, _client(second) as b:
        etag_a = (await a.get("/folders/1")).headers["etag"]
        etag_b = (await b.get("/folders/1")).headers["etag"]
        assert etag_a == etag_b
        assert (await b.get("/folders/1", headers={"If-None-Match": etag_a})).status_code == 304
    await first.state.lockstep.stop()
    restarted = make_app(redis_url=redis_url)  # a new process after a restart
    await restarted.state.lockstep.start()
    async with _client(restarted) as c:
        assert (await c.get("/folders/1")).headers["etag"] == etag_a


async def test_only_2xx_cached_and_allowed_headers_replayed(make_app: AppFactory) -> None:
    app = make_app()
    await make_app.prepare(app)  # type: ignore[attr-defined]
    async with _client(app) as client:
        miss = await client.get("/folders/1")
        hit = await client.get("/folders/1")
        assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
        assert hit.status_code == 200
        assert hit.headers["location"] == "/folders/1"
        assert "x-secret" not in hit.headers  # not on the replay allow-list
        assert hit.headers["cache-control"] == "private, max-age=300"  # the route's preset
        assert int(hit.headers["age"]) >= 0
        for _ in range(2):
            missing = await client.get("/folders/2")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "not_found"
        other_user = await client.get("/folders/1", headers={"X-User": "bob"})
        assert other_user.headers["x-cache"] == "MISS"  # keyed by the caller
        metrics = (await client.get("/metrics")).text
        assert 'lockstep_cache_lookups_total{result="hit_l1"}' in metrics
        assert "lockstep_cache_fills_total" in metrics


async def test_redis_down_serves_from_the_database(make_app: AppFactory) -> None:
    app = make_app(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.2)
    await make_app.prepare(app)  # type: ignore[attr-defined]
    await app.state.lockstep.start()  # does not hang: starts, keeps trying in the background
    async with _client(app) as client:
        response = await client.get("/folders/1")
        assert response.status_code == 200
        assert response.json()["name"] == "one"
        assert response.headers["x-cache"] == "BYPASS"
        assert (await client.post("/folders/1?name=uno")).status_code == 200
        assert (await client.get("/folders/1")).json()["name"] == "uno"
        assert (await client.get("/health")).status_code == 200
        ready = await client.get("/ready")
        assert ready.status_code == 200  # this app registered no redis readiness check
        metrics = (await client.get("/metrics")).text
        assert 'lockstep_cache_errors_total{operation="read_stamps"}' in metrics


async def test_fail_closed_when_asked(make_app: AppFactory) -> None:
    app = make_app(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.2, cache_fail_closed=True)
    await make_app.prepare(app)  # type: ignore[attr-defined]
    async with _client(app) as client:
        response = await client.get("/folders/1")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "cache_unavailable"


async def test_public_hits_are_answered_before_routing(make_app: AppFactory) -> None:
    app = make_app()
    await make_app.prepare(app)  # type: ignore[attr-defined]
    async with _client(app) as client:
        first = await client.get("/public/folders/1")
        assert (first.headers["x-cache"], len(app.state.calls)) == ("MISS", 1)
        hit = await client.get("/public/folders/1")
        assert hit.headers["x-cache"] == "HIT"
        assert hit.json() == first.json()
        assert hit.headers["etag"] == first.headers["etag"]
        not_modified = await client.get(
            "/public/folders/1", headers={"If-None-Match": first.headers["etag"]}
        )
        assert not_modified.status_code == 304
        assert len(app.state.calls) == 1  # neither routed nor solved: answered up front
        assert "x-request-id" in hit.headers  # the observability stack still wraps it
        await client.post("/folders/1?name=uno")
        fresh = await client.get("/public/folders/1")
        assert (fresh.headers["x-cache"], fresh.json()["name"]) == ("MISS", "uno")
        assert len(app.state.calls) == 2
        revalidate = await client.get("/public/folders/1", headers={"Cache-Control": "no-cache"})
        assert revalidate.headers["x-cache"] == "MISS"
        metrics = (await client.get("/metrics")).text
        assert 'route="/public/folders/{folder_id}"' in metrics
        unmatched = [
            line
            for line in metrics.splitlines()
            if line.startswith("http_requests_total") and "<unmatched>" in line
        ]
        assert unmatched == []  # shortcut answers keep their route template label


async def test_a_private_answer_is_replayed_before_routing_only_to_its_own_caller(
    make_app: AppFactory,
) -> None:
    """The route's role check runs for everyone but the caller the answer was made for: an
    analyst of the same organization (the same ``vary``) is refused, another admin is
    checked and then shares the cached value."""
    app = make_app()
    await make_app.prepare(app)  # type: ignore[attr-defined]
    checks = app.state.calls
    admin = {"X-User": "ann", "X-Role": "admin", "X-Org": "1"}
    async with _client(app) as client:
        first = await client.get("/admin/folders/1", headers=admin)
        assert (first.status_code, first.headers["x-cache"], len(checks)) == (200, "MISS", 1)
        again = await client.get("/admin/folders/1", headers=admin)
        assert (again.headers["x-cache"], len(checks)) == ("HIT", 1)  # before routing
        analyst = await client.get("/admin/folders/1", headers={**admin, "X-Role": "analyst"})
        assert (analyst.status_code, len(checks)) == (403, 2)
        other = await client.get("/admin/folders/1", headers={**admin, "X-User": "bo"})
        assert (other.status_code, other.headers["x-cache"], len(checks)) == (200, "HIT", 3)
        assert other.headers["etag"] == first.headers["etag"]
        anonymous = await client.get("/admin/folders/1", headers={"X-Org": "1"})
        assert (anonymous.status_code, len(checks)) == (403, 4)
