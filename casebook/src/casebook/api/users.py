"""``/api/v1/users``: the organization's users, managed by its admins.

Admins list users, create one (e-mail, name, role, a first password), and change a user's
name, role or whether it is active. A user of another organization answers 404, like one
that does not exist.

A deactivation or a role change ends the user's sign-ins: every refresh token of the user
is revoked in the same transaction, so the next refresh fails (401) and the user must sign
in again (a deactivated user cannot). An access token already issued is refused from the
next request on (:mod:`casebook.standing`). An admin cannot deactivate or demote
themselves (the organization would risk having no admin left).
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from casebook.api.deps import AdminDep, PrincipalDep, ServicesDep, organization_of
from casebook.auth import Principal
from casebook.models import RefreshToken, Role, User
from casebook.responses import PersonList, UserList, UserOut
from casebook.schemas import IdPath, UserCreate, UserUpdate
from lockstep import (
    ConflictError,
    JSONBytesResponse,
    NotFoundError,
    Row,
    Scope,
    cached,
    error_responses,
    openapi_links,
    precondition,
)

router = APIRouter(prefix="/users", tags=["users"])
# The directory every member reads (names on the queue, the audit trail, assignees).
people = APIRouter(prefix="/people", tags=["users"])

USER_LINKS = openapi_links("user_id", "get_user", "update_user")


def user_out(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "email": user.email,
        "full_name": user.full_name,
        "role": user.role.value,
        "is_active": user.is_active,
        "created_at": user.created_at,
    }


async def load_user(session: AsyncSession, principal: Principal, user_id: int) -> User:
    user = await session.scalar(
        select(User).where(User.id == user_id, User.organization_id == principal.organization_id)
    )
    if user is None:
        raise NotFoundError(f"user {user_id} not found")
    return user


@router.get("", response_model=UserList, responses=error_responses(403))
@cached(
    name="users",
    depends=lambda principal: [Scope("users", organization_id=principal.organization_id)],
    vary=organization_of,
)
async def list_users(principal: AdminDep, services: ServicesDep) -> JSONBytesResponse:
    """Every user of the organization, by name."""
    async with services.db.reader() as session:
        users = (
            await session.scalars(
                select(User)
                .where(User.organization_id == principal.organization_id)
                .order_by(User.full_name, User.id)
            )
        ).all()
    return JSONBytesResponse({"items": [user_out(u) for u in users]})


@people.get("", response_model=PersonList, responses=error_responses(401))
@cached(
    name="people",
    depends=lambda principal: [Scope("users", organization_id=principal.organization_id)],
    vary=organization_of,  # every member may read it: the same answer for the organization
)
async def list_people(principal: PrincipalDep, services: ServicesDep) -> JSONBytesResponse:
    """The organization's members by name, for every role: who claimed, decided, wrote or
    is assigned something. No e-mail addresses (those are for admins, ``GET /users``)."""
    async with services.db.reader() as session:
        rows = await session.execute(
            select(User.id, User.full_name, User.role, User.is_active)
            .where(User.organization_id == principal.organization_id)
            .order_by(User.full_name, User.id)
        )
    items = [
        {"id": i, "full_name": name, "role": role.value, "is_active": active}
        for i, name, role, active in rows
    ]
    return JSONBytesResponse({"items": items})


@router.post(
    "",
    status_code=201,
    response_model=UserOut,
    responses={201: {"description": "Created", "links": USER_LINKS}, **error_responses(403, 409)},
)
async def create_user(
    body: UserCreate, principal: AdminDep, services: ServicesDep
) -> JSONBytesResponse:
    """A new user of the organization, who signs in with ``email`` and ``password``."""
    email = body.email.strip().lower()
    password_hash = await services.passwords.hash(body.password)
    async with services.db.writer() as session:
        taken = await session.scalar(select(User.id).where(func.lower(User.email) == email))
        if taken is not None:
            raise ConflictError(f"a user with e-mail {email!r} already exists")
        user = User(
            organization_id=principal.organization_id,
            email=email,
            full_name=body.full_name,
            role=body.role,
            password_hash=password_hash,
            is_active=True,
        )
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:  # the same e-mail created concurrently
            raise ConflictError(f"a user with e-mail {email!r} already exists") from None
        out = user_out(user)
    return JSONBytesResponse(out, status_code=201, headers={"Location": f"/api/v1/users/{user.id}"})


@router.get("/{user_id}", response_model=UserOut, responses=error_responses(403))
@cached(name="user", depends=lambda user_id: [Row("users", user_id)], vary=organization_of)
async def get_user(
    user_id: IdPath, principal: AdminDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.reader() as session:
        user = await load_user(session, principal, user_id)
    return JSONBytesResponse(user_out(user))


@router.patch("/{user_id}", response_model=UserOut, responses=error_responses(403, 409, 412))
@precondition(get_user)
async def update_user(
    user_id: IdPath, body: UserUpdate, principal: AdminDep, services: ServicesDep
) -> JSONBytesResponse:
    """Change a user's name, role or activity; a deactivation or a role change revokes the
    user's sign-ins (see the module docs for how long an access token lasts)."""
    changes = body.model_dump(exclude_unset=True)
    if user_id == principal.user_id and (
        changes.get("is_active") is False or changes.get("role", Role.ADMIN) is not Role.ADMIN
    ):
        raise ConflictError("admins cannot deactivate or demote themselves; ask another admin")
    async with services.db.writer() as session:
        user = await load_user(session, principal, user_id)
        ends_sign_ins = (changes.get("is_active") is False and user.is_active) or (
            "role" in changes and changes["role"] is not user.role
        )
        for name, value in changes.items():
            setattr(user, name, value)
        if ends_sign_ins:
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=dt.datetime.now(dt.UTC))
            )
        await session.flush()
        out = user_out(user)
    return JSONBytesResponse(out)
