"""Users managed by their organization's admins: create, rename, change role, deactivate;
a deactivation or a role change ends the user's sign-ins."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from lockstep import AuthenticationError
from lockstep.realtime import ConnectRequest

from .conftest import Login

PASSWORD = "correct horse battery"  # a test user's


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": email, "password": password})


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def new_user(admin: httpx.AsyncClient, email: str, role: str = "analyst") -> int:
    created = await admin.post(
        "/api/v1/users",
        json={"email": email, "full_name": "Nora Field", "role": role, "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/api/v1/users/{created.json()['id']}"
    return int(created.json()["id"])


async def test_an_admin_creates_a_user_who_signs_in_and_is_listed(
    login: Login, anonymous: httpx.AsyncClient
) -> None:
    admin = await login("admin@acme.test")
    user_id = await new_user(admin, "Nora@Acme.test")
    signed = await sign_in(anonymous, "nora@acme.test", PASSWORD)
    assert signed.status_code == 200, signed.text
    listed = (await admin.get("/api/v1/users")).json()["items"]
    assert {
        "id": user_id,
        "email": "nora@acme.test",
        "role": "analyst",
        "is_active": True,
    }.items() <= next(u for u in listed if u["id"] == user_id).items()
    again = await admin.post(
        "/api/v1/users",
        json={"email": "NORA@acme.test", "full_name": "N", "role": "analyst", "password": PASSWORD},
    )
    assert again.status_code == 409
    short = await admin.post(
        "/api/v1/users",
        json={"email": "x@acme.test", "full_name": "X", "role": "analyst", "password": "short"},
    )
    assert short.status_code == 422


async def test_only_admins_manage_users(login: Login) -> None:
    for email in ("analyst@acme.test", "reviewer@acme.test"):
        client = await login(email)
        assert (await client.get("/api/v1/users")).status_code == 403
        body = {"email": "y@acme.test", "full_name": "Y", "role": "admin", "password": PASSWORD}
        assert (await client.post("/api/v1/users", json=body)).status_code == 403
        assert (await client.patch("/api/v1/users/1", json={"role": "admin"})).status_code == 403


async def test_another_organizations_user_is_404(login: Login) -> None:
    acme = await login("admin@acme.test")
    globex = await login("admin@globex.test")
    user_id = await new_user(acme, "kept@acme.test")
    assert (await globex.get(f"/api/v1/users/{user_id}")).status_code == 404
    patched = await globex.patch(f"/api/v1/users/{user_id}", json={"is_active": False})
    assert patched.status_code == 404
    assert (await acme.get(f"/api/v1/users/{user_id}")).json()["is_active"] is True


async def test_deactivation_ends_the_sign_in_and_refuses_the_next_one(
    login: Login, anonymous: httpx.AsyncClient
) -> None:
    admin = await login("admin@acme.test")
    user_id = await new_user(admin, "leaving@acme.test")
    pair = (await sign_in(anonymous, "leaving@acme.test", PASSWORD)).json()
    current = await admin.get(f"/api/v1/users/{user_id}")
    stale = current.headers["etag"]
    done = await admin.patch(
        f"/api/v1/users/{user_id}", json={"is_active": False}, headers={"If-Match": stale}
    )
    assert done.status_code == 200, done.text
    assert done.json()["is_active"] is False
    assert (await refresh(anonymous, pair["refresh_token"])).status_code == 401
    assert (await sign_in(anonymous, "leaving@acme.test", PASSWORD)).status_code == 401
    # The ETag moved with the change: a second admin's edit from the old one is refused.
    late = await admin.patch(
        f"/api/v1/users/{user_id}", json={"full_name": "Gone"}, headers={"If-Match": stale}
    )
    assert late.status_code == 412


async def test_a_role_change_takes_effect_at_the_next_sign_in(
    login: Login, anonymous: httpx.AsyncClient
) -> None:
    admin = await login("admin@acme.test")
    user_id = await new_user(admin, "promoted@acme.test", role="reviewer")
    pair = (await sign_in(anonymous, "promoted@acme.test", PASSWORD)).json()
    changed = await admin.patch(f"/api/v1/users/{user_id}", json={"role": "analyst"})
    assert changed.status_code == 200, changed.text
    assert (await refresh(anonymous, pair["refresh_token"])).status_code == 401
    fresh = (await sign_in(anonymous, "promoted@acme.test", PASSWORD)).json()
    me = await anonymous.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
    )
    assert me.json()["role"] == "analyst"
    # A rename ends nothing.
    renamed = await admin.patch(f"/api/v1/users/{user_id}", json={"full_name": "Pat Lee"})
    assert renamed.status_code == 200
    assert (await refresh(anonymous, fresh["refresh_token"])).status_code == 200


async def test_admins_cannot_lock_themselves_out(login: Login) -> None:
    admin = await login("admin@acme.test")
    me = (await admin.get("/api/v1/auth/me")).json()["id"]
    for change in ({"is_active": False}, {"role": "analyst"}):
        refused = await admin.patch(f"/api/v1/users/{me}", json=change)
        assert refused.status_code == 409, refused.text
    assert (await admin.patch(f"/api/v1/users/{me}", json={"role": "admin"})).status_code == 200


async def test_concurrent_deactivations_with_one_etag_have_one_winner(login: Login) -> None:
    admin = await login("admin@acme.test")
    user_id = await new_user(admin, "contested@acme.test")
    etag = (await admin.get(f"/api/v1/users/{user_id}")).headers["etag"]
    answers = await asyncio.gather(
        *(
            admin.patch(
                f"/api/v1/users/{user_id}",
                json={"full_name": f"Name {n}"},
                headers={"If-Match": etag},
            )
            for n in range(5)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 412, 412, 412, 412]


async def test_an_admins_cached_answer_never_reaches_another_role(login: Login) -> None:
    """The cached answer of an admin-only route is not replayed to the organization's other
    roles before the route's check runs (found by the differential harness)."""
    admin = await login("admin@acme.test")
    analyst = await login("analyst@acme.test")
    for url in ("/api/v1/users", "/api/v1/users/1"):
        assert (await admin.get(url)).status_code == 200
        assert (await admin.get(url)).headers["x-cache"] == "HIT"
        assert (await analyst.get(url)).status_code == 403


@pytest.mark.parametrize("change", [{"is_active": False}, {"role": "reviewer"}])
async def test_a_deactivation_or_role_change_ends_open_sessions_at_once(
    login: Login, anonymous: httpx.AsyncClient, casebook_app: FastAPI, change: dict[str, object]
) -> None:
    """The user's access token, still within its 15 minutes, is refused by the next request
    of every kind: a cached answer replayed before routing, a route, a write, a shape read,
    a push and a realtime connect (casebook.standing)."""
    admin = await login("admin@acme.test")
    user_id = await new_user(admin, "leaving@acme.test")
    token = (await sign_in(anonymous, "leaving@acme.test", PASSWORD)).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    cached = "/api/v1/cases/1"
    assert (await anonymous.get(cached, headers=auth)).status_code == 200
    assert (await anonymous.get(cached, headers=auth)).headers["x-cache"] == "HIT"
    realtime = casebook_app.state.services.realtime
    await realtime.authenticate(ConnectRequest(token=token))  # connects while standing

    assert (await admin.patch(f"/api/v1/users/{user_id}", json=change)).status_code == 200

    shape = {"table": "cases", "offset": "-1"}
    push = {"client_id": "tab", "mutations": []}
    answers = {
        "replayed": await anonymous.get(cached, headers=auth),
        "route": await anonymous.get("/api/v1/auth/me", headers=auth),
        "write": await anonymous.patch(cached, json={"title": "after"}, headers=auth),
        "shape": await anonymous.get("/v1/shape", params=shape, headers=auth),
        "push": await anonymous.post("/sync/push", json=push, headers=auth),
    }
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 401)
    assert "session has ended" in answers["replayed"].json()["error"]["message"]
    with pytest.raises(AuthenticationError):
        await realtime.authenticate(ConnectRequest(token=token))
    # Everyone else is unaffected, cached answers included.
    assert (await admin.get(cached)).status_code == 200


async def test_every_member_reads_the_directory_of_their_own_organization(login: Login) -> None:
    admin = await login("admin@acme.test")
    reviewer = await login("reviewer@acme.test")
    globex = await login("analyst@globex.test")
    user_id = await new_user(admin, "dana@acme.test", role="reviewer")
    listed = await reviewer.get("/api/v1/people")
    assert listed.status_code == 200, listed.text
    dana = next(p for p in listed.json()["items"] if p["id"] == user_id)
    assert dana == {"id": user_id, "full_name": "Nora Field", "role": "reviewer", "is_active": True}
    assert all("email" not in p for p in listed.json()["items"])  # e-mails are for admins
    assert user_id not in {p["id"] for p in (await globex.get("/api/v1/people")).json()["items"]}
    assert (await reviewer.get("/api/v1/people")).headers["x-cache"] == "HIT"
    # A change shows at once, cached answers included.
    await admin.patch(f"/api/v1/users/{user_id}", json={"full_name": "Dana Field"})
    again = (await reviewer.get("/api/v1/people")).json()["items"]
    assert next(p for p in again if p["id"] == user_id)["full_name"] == "Dana Field"
