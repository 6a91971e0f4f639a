"""casebook's rate limits: sign-ins per account and per address (the lockout policy), API
requests per user, X-Forwarded-For only from configured proxies. On SQLite and PostgreSQL
(counters in memory; the Redis store is tested with lockstep's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from casebook.app import create_app
from casebook.settings import CasebookSettings

AppWith = Callable[..., Any]


@pytest.fixture
def app_with(casebook_app: FastAPI, casebook_settings: CasebookSettings) -> AppWith:
    """``async with app_with(**settings) as client``: another app on the same seeded
    database, with other settings."""

    @asynccontextmanager
    async def build(peer: str = "192.0.2.7", **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(casebook_settings.model_copy(update=overrides))
        transport = httpx.ASGITransport(app=app, client=(peer, 4000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://cb") as client:
                yield client
        finally:
            app.state.services.passwords.close()
            await app.state.services.limiter.close()
            await app.state.services.db.dispose()

    return build


def form(email: str, password: str = "demo") -> dict[str, str]:  # noqa: S107
    return {"username": email, "password": password}


async def test_an_account_is_locked_after_its_attempts_whoever_makes_them(
    app_with: AppWith,
) -> None:
    async with app_with(rate_limit_login_account="3/15 minutes") as client:
        for _ in range(3):
            wrong = await client.post("/api/v1/auth/token", data=form("analyst@acme.test", "x"))
            assert wrong.status_code == 401
        # The right password no longer helps, in any spelling of the address.
        locked = await client.post("/api/v1/auth/token", data=form("ANALYST@acme.test"))
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "rate_limited"
        assert int(locked.headers["retry-after"]) > 60
        # Another account is not locked; an unknown one is counted the same way.
        assert (await client.post("/api/v1/auth/token", data=form("reviewer@acme.test"))).is_success
        for _ in range(3):
            await client.post("/api/v1/auth/token", data=form("nobody@acme.test"))
        assert (
            await client.post("/api/v1/auth/token", data=form("nobody@acme.test"))
        ).status_code == 429


async def test_sign_ins_per_address_and_forwarded_for_only_from_proxies(
    app_with: AppWith,
) -> None:
    limited = {"rate_limit_login_address": "2/minute"}
    async with app_with(**limited) as client:
        for email in ("analyst@acme.test", "reviewer@acme.test"):
            assert (await client.post("/api/v1/auth/token", data=form(email))).is_success
        spoofed = await client.post(
            "/api/v1/auth/token",
            data=form("admin@acme.test"),
            headers={"X-Forwarded-For": "198.51.100.1"},
        )
        assert spoofed.status_code == 429
        assert spoofed.headers["ratelimit-limit"] == "2"
    async with app_with(peer="10.0.0.5", trusted_proxies="10.0.0.0/8", **limited) as client:
        for n in range(3):
            response = await client.post(
                "/api/v1/auth/token",
                data=form("analyst@acme.test"),
                headers={"X-Forwarded-For": f"198.51.100.{n}"},
            )
            assert response.is_success, response.text


async def test_api_requests_per_user_carry_ratelimit_headers(app_with: AppWith) -> None:
    async with app_with(rate_limit_api="3/minute") as client:
        token = (await client.post("/api/v1/auth/token", data=form("analyst@acme.test"))).json()[
            "access_token"
        ]
        client.headers["Authorization"] = f"Bearer {token}"
        first = await client.get("/api/v1/cases/1")
        assert first.headers["ratelimit-limit"] == "3"
        assert first.headers["ratelimit-remaining"] == "2"
        await client.get("/api/v1/cases/1")
        await client.get("/api/v1/auth/me")
        refused = await client.get("/api/v1/cases/1")  # a cached answer counts too
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert (await client.get("/health")).status_code == 200  # probes are not limited


async def test_limits_can_be_switched_off(app_with: AppWith) -> None:
    async with app_with(rate_limits_enabled=False, rate_limit_login_account="1/hour") as c:
        for _ in range(3):
            assert (await c.post("/api/v1/auth/token", data=form("analyst@acme.test"))).is_success
