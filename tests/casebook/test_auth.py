"""Login, refresh, token checks and roles."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

from casebook.auth import Passwords, hash_password
from casebook.seed import DEMO_PASSWORD
from lockstep import OverloadedError

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


async def sign_in(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/token", data={"username": "analyst@acme.test", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 200
    pair: dict[str, str] = response.json()
    return pair


async def exchange(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_a_refresh_token_works_once_and_its_reuse_ends_the_sign_in(
    anonymous: httpx.AsyncClient,
) -> None:
    first = (await sign_in(anonymous))["refresh_token"]
    second = (await exchange(anonymous, first)).json()["refresh_token"]
    third = (await exchange(anonymous, second)).json()["refresh_token"]
    # A thief replays the first token: refused, and the whole sign-in ends with it.
    reused = await exchange(anonymous, first)
    assert reused.status_code == 401
    assert "already used" in reused.json()["error"]["message"]
    assert (await exchange(anonymous, third)).status_code == 401
    # Another sign-in of the same user is not touched.
    other = (await sign_in(anonymous))["refresh_token"]
    assert (await exchange(anonymous, other)).status_code == 200


async def test_logout_ends_the_sign_in(anonymous: httpx.AsyncClient) -> None:
    first = (await sign_in(anonymous))["refresh_token"]
    second = (await exchange(anonymous, first)).json()["refresh_token"]
    logout = await anonymous.post("/api/v1/auth/logout", data={"refresh_token": first})
    assert logout.status_code == 204
    assert (await exchange(anonymous, second)).status_code == 401
    again = await anonymous.post("/api/v1/auth/logout", json={"refresh_token": second})
    assert again.status_code == 204  # idempotent
    forged = await anonymous.post("/api/v1/auth/logout", json={"refresh_token": "x.y.z"})
    assert forged.status_code == 401


async def test_concurrent_exchanges_of_one_token_are_one_use_and_one_reuse(
    anonymous: httpx.AsyncClient,
) -> None:
    token = (await sign_in(anonymous))["refresh_token"]
    answers = await asyncio.gather(*(exchange(anonymous, token) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401]
    winner = next(a for a in answers if a.status_code == 200).json()["refresh_token"]
    assert (await exchange(anonymous, winner)).status_code == 401  # the family is revoked


async def test_every_sign_in_costs_one_password_check(
    anonymous: httpx.AsyncClient, casebook_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown e-mail spends the same check as a wrong password (against a dummy hash),
    so timing tells nothing about which e-mails exist."""
    checked: list[str | None] = []
    passwords = casebook_app.state.services.passwords
    verify = passwords.verify

    async def counting(password_hash: str | None, password: str) -> bool:
        checked.append(password_hash)
        return bool(await verify(password_hash, password))

    monkeypatch.setattr(passwords, "verify", counting)
    for username in ("analyst@acme.test", "nobody@acme.test"):
        await anonymous.post("/api/v1/auth/token", data={"username": username, "password": "x"})
    assert len(checked) == 2
    assert checked[0] is not None
    assert checked[1] is None  # no user: the dummy hash is checked instead


async def test_a_full_password_queue_is_503_with_retry_after() -> None:
    passwords = Passwords(workers=1, queue=1)
    hashed = hash_password("secret")
    try:
        results = await asyncio.gather(
            *(passwords.verify(hashed, "secret") for _ in range(5)), return_exceptions=True
        )
    finally:
        passwords.close()
    refused = [r for r in results if isinstance(r, OverloadedError)]
    assert [r for r in results if r is True] == [True, True]  # one running, one waiting
    assert len(refused) == 3  # refused at once, not queued without bound
    assert refused[0].status_code == 503
    assert refused[0].retry_after == 1
