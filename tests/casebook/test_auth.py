"""Login, refresh, token checks and roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from casebook.seed import DEMO_PASSWORD

Login = Callable[[str], Awaitable[httpx.AsyncClient]]


async def test_login_returns_a_token_pair_and_me_works(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post(
        "/api/v1/auth/token", data={"username": "Analyst@Acme.test", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert response.headers["cache-control"] == "no-store"
    me = await anonymous.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json()["email"] == "analyst@acme.test"
    assert me.json()["role"] == "analyst"


async def test_wrong_password_and_unknown_user_look_the_same(anonymous: httpx.AsyncClient) -> None:
    wrong = await anonymous.post(
        "/api/v1/auth/token", data={"username": "analyst@acme.test", "password": "nope"}
    )
    unknown = await anonymous.post(
        "/api/v1/auth/token", data={"username": "nobody@acme.test", "password": "nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert wrong.json()["error"]["code"] == "unauthenticated"


async def test_missing_bad_and_refresh_tokens_are_401(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/api/v1/cases")).status_code == 401
    bad = await anonymous.get("/api/v1/cases", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "unauthenticated"
    pair = (
        await anonymous.post(
            "/api/v1/auth/token", data={"username": "analyst@acme.test", "password": DEMO_PASSWORD}
        )
    ).json()
    # A refresh token is not an access token.
    wrong_type = await anonymous.get(
        "/api/v1/cases", headers={"Authorization": f"Bearer {pair['refresh_token']}"}
    )
    assert wrong_type.status_code == 401
    renewed = await anonymous.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert renewed.status_code == 200
    assert renewed.json()["access_token"] != pair["access_token"]


async def test_reviewer_cannot_write_and_analyst_cannot_delete(login: Login) -> None:
    reviewer = await login("reviewer@acme.test")
    denied = await reviewer.post("/api/v1/cases", json={"reference": "R-1", "title": "t"})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied"
    analyst = await login("analyst@acme.test")
    assert (await analyst.delete("/api/v1/cases/1")).status_code == 403
    admin = await login("admin@acme.test")
    assert (await admin.delete("/api/v1/cases/1")).status_code == 204
    assert (await admin.get("/api/v1/cases/1")).status_code == 404
