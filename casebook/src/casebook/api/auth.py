"""``/api/v1/auth``: OAuth2 password login, refresh, and who-am-I."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from pydantic import BaseModel
from sqlalchemy import func, select

from casebook.api.deps import PrincipalDep, ServicesDep
from casebook.auth import TokenPair, verify_password
from casebook.models import User
from lockstep import AuthenticationError, JSONBytesResponse, NotFoundError

router = APIRouter(prefix="/auth", tags=["auth"])


class RefreshRequest(BaseModel):
    refresh_token: str


def _pair(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


@router.post("/token")
async def login(
    services: ServicesDep,
    username: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=1024)],
) -> JSONBytesResponse:
    """Exchange e-mail + password (OAuth2 password form) for an access and a refresh token."""
    async with services.db.reader() as session:
        user = await session.scalar(
            select(User).where(func.lower(User.email) == username.strip().lower())
        )
    hashed = user.password_hash if user is not None and user.is_active else None
    if user is None or not verify_password(hashed, password):
        raise AuthenticationError("incorrect e-mail or password")
    return JSONBytesResponse(
        _pair(services.tokens.issue(user)), headers={"Cache-Control": "no-store"}
    )


@router.post("/refresh")
async def refresh(body: RefreshRequest, services: ServicesDep) -> JSONBytesResponse:
    """A new token pair for a valid refresh token whose user is still active."""
    principal = services.tokens.verify(body.refresh_token, "refresh")
    async with services.db.reader() as session:
        user = await session.get(User, principal.user_id)
    if user is None or not user.is_active:
        raise AuthenticationError("user is no longer active")
    return JSONBytesResponse(
        _pair(services.tokens.issue(user)), headers={"Cache-Control": "no-store"}
    )


@router.get("/me")
async def me(principal: PrincipalDep, services: ServicesDep) -> JSONBytesResponse:
    async with services.db.reader() as session:
        user = await session.get(User, principal.user_id)
    if user is None:
        raise NotFoundError("user not found")
    return JSONBytesResponse(
        {
            "id": user.id,
            "email": user.email,
            "full_name": user.full_name,
            "role": user.role.value,
            "organization_id": user.organization_id,
        }
    )
