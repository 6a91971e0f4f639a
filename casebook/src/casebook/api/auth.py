"""``/api/v1/auth``: OAuth2 password login, refresh, and who-am-I.

A wrong password, an unknown e-mail and a deactivated account get the same answer in the
same time (one password check each). ``/auth/refresh`` and ``/auth/logout`` take the
refresh token as a form field (like ``/auth/token``) or as JSON, whichever the client
sends. A refresh token is exchanged once; using it again ends the sign-in
(:mod:`casebook.refresh`).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Form, Request, Response
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlalchemy import func, select

from casebook import refresh as refresh_tokens
from casebook.api.deps import PrincipalDep, ServicesDep
from casebook.auth import TokenPair
from casebook.models import User
from casebook.responses import MeOut, TokenOut
from casebook.schemas import NO_NUL
from lockstep import (
    AuthenticationError,
    BadRequestError,
    JSONBytesResponse,
    NotFoundError,
    ValidationFailedError,
    error_responses,
)

router = APIRouter(prefix="/auth", tags=["auth"])

NO_STORE = {"Cache-Control": "no-store"}


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[
        str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[A-Za-z0-9._-]+$")
    ]


REFRESH_BODY = {
    "required": True,
    "content": {
        media: {"schema": RefreshRequest.model_json_schema()}
        for media in ("application/json", "application/x-www-form-urlencoded")
    },
}


def _pair(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


@router.post("/token", response_model=TokenOut, responses=error_responses(401, 429))
async def login(
    services: ServicesDep,
    username: Annotated[str, Form(min_length=1, max_length=254, pattern=NO_NUL)],
    password: Annotated[str, Form(min_length=1, max_length=1024, pattern=NO_NUL)],
) -> JSONBytesResponse:
    """Exchange e-mail + password (OAuth2 password form) for an access and a refresh token.

    Attempts are limited per client address (the middleware) and per account, known or not
    (here: ``LOCKSTEP_RATE_LIMIT_LOGIN_ACCOUNT``); past either, 429 with ``Retry-After``."""
    if services.settings.rate_limits_enabled:
        account = username.strip().lower()
        await services.limiter.check(services.settings.account_limit(), account)
    async with services.db.reader() as session:
        user = await session.scalar(
            select(User).where(func.lower(User.email) == username.strip().lower())
        )
    hashed = user.password_hash if user is not None and user.is_active else None
    # Always one check (a dummy hash when there is no user), so timing tells nothing.
    if not await services.passwords.verify(hashed, password) or user is None:
        raise AuthenticationError("incorrect e-mail or password")
    async with services.db.writer() as session:
        pair = await refresh_tokens.start(session, services.tokens, user)
    return JSONBytesResponse(_pair(pair), headers=NO_STORE)


@router.post(
    "/refresh",
    response_model=TokenOut,
    openapi_extra={"requestBody": REFRESH_BODY},
    responses=error_responses(401),
)
async def refresh(request: Request, services: ServicesDep) -> JSONBytesResponse:
    """A new token pair for a valid refresh token whose user is still active, once: the
    token is used up, and using it again ends the sign-in (every token of it). The token
    comes as a form field or a JSON body, ``refresh_token`` either way."""
    body = await _refresh_request(request)
    pair = await refresh_tokens.rotate(services.db, services.tokens, body.refresh_token)
    return JSONBytesResponse(_pair(pair), headers=NO_STORE)


@router.post(
    "/logout",
    status_code=204,
    openapi_extra={"requestBody": REFRESH_BODY},
    responses=error_responses(401),
)
async def logout(request: Request, services: ServicesDep) -> Response:
    """End the sign-in of this refresh token: it and every token refreshed from it stop
    working (access tokens already issued expire on their own, within minutes)."""
    body = await _refresh_request(request)
    await refresh_tokens.revoke(services.db, services.tokens, body.refresh_token)
    return Response(status_code=204, headers=NO_STORE)


async def _refresh_request(request: Request) -> RefreshRequest:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if media == "application/x-www-form-urlencoded":
            form = await request.form()
            data: Any = {name: value for name, value in form.items() if isinstance(value, str)}
        elif media == "application/json":
            data = orjson.loads(await request.body())
        else:
            raise BadRequestError(
                "send refresh_token as application/json or application/x-www-form-urlencoded"
            )
        return RefreshRequest.model_validate(data)
    except orjson.JSONDecodeError:
        raise BadRequestError("the body is not valid JSON") from None
    except ValidationError as exc:
        raise ValidationFailedError(
            "Request validation failed",
            details=[
                {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
                for error in exc.errors()[:20]
            ],
        ) from None


@router.get("/me", response_model=MeOut)
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
