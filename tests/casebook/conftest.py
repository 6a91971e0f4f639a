"""casebook fixtures: a migrated, seeded database on each backend and logged-in clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from casebook.app import create_app
from casebook.seed import DEMO_PASSWORD, seed
from casebook.services import MIGRATIONS
from casebook.settings import CasebookSettings
from lockstep import Database, load_settings, upgrade

SEED_TRANSACTIONS = 600

Login = Callable[[str], Awaitable[httpx.AsyncClient]]


@pytest.fixture
def casebook_settings(database_url: str, tmp_path: Path) -> CasebookSettings:
    return load_settings(
        CasebookSettings,
        database_url=database_url,
        data_dir=tmp_path,
        env="test",
        jwt_secret="test-secret-" + "x" * 40,
        log_format="console",
        access_log=False,
        slow_query_ms=0,
    )


@pytest.fixture
async def casebook_app(casebook_settings: CasebookSettings) -> AsyncIterator[FastAPI]:
    db = Database(casebook_settings)
    try:
        await upgrade(db, MIGRATIONS)
        await seed(db, transactions=SEED_TRANSACTIONS)
    finally:
        await db.dispose()
    app = create_app(casebook_settings)
    yield app
    await app.state.services.db.dispose()


@pytest.fixture
async def login(casebook_app: FastAPI) -> AsyncIterator[Login]:
    """``await login("analyst@acme.test")`` → an httpx client carrying that user's token."""
    clients: list[httpx.AsyncClient] = []

    async def _login(email: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=casebook_app), base_url="http://casebook.test"
        )
        clients.append(client)
        response = await client.post(
            "/api/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD}
        )
        assert response.status_code == 200, response.text
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return client

    yield _login
    for client in clients:
        await client.aclose()


@pytest.fixture
async def anonymous(casebook_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=casebook_app), base_url="http://casebook.test"
    ) as client:
        yield client
