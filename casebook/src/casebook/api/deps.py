"""Request dependencies: the services, the authenticated principal and role checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from casebook.auth import Principal
from casebook.models import Role
from casebook.pagination import DEFAULT_LIMIT, MAX_LIMIT
from casebook.services import Services
from lockstep import AuthenticationError, Dependency, PermissionDeniedError, Scope


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


# Declares the bearer scheme in the OpenAPI document; the 401 is ours (the envelope).
bearer = HTTPBearer(auto_error=False, description="an access token from /auth/token")


async def get_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    services: Annotated[Services, Depends(get_services)],
) -> Principal:
    """The caller from ``Authorization: Bearer <access token>``; 401 otherwise, also when
    the token's user has since been deactivated or given another role
    (:mod:`casebook.standing`)."""
    if credentials is None or not credentials.credentials.strip():
        raise AuthenticationError("missing bearer token")
    return await services.standing.authenticate(credentials.credentials.strip())


def require_writer(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """Analysts and admins change case data; reviewers only read and adjudicate."""
    if not principal.has_role(Role.ANALYST):
        raise PermissionDeniedError("analyst or admin role required")
    return principal


def require_reviewer(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """Reviewers and admins adjudicate; analysts flag but never decide."""
    if not principal.has_role(Role.REVIEWER):
        raise PermissionDeniedError("reviewer or admin role required")
    return principal


def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.role is not Role.ADMIN:
        raise PermissionDeniedError("admin role required")
    return principal


def organization_of(principal: Principal) -> int:
    """Whose data a cached answer is: the caller's organization, the ``vary`` of casebook's
    cached routes. Callers of one organization share an answer's value and ETag; lockstep
    replays an answer before routing only to the caller it was made for, so a route's role
    check still runs for everyone else."""
    return principal.organization_id


def members_of(principal: Principal) -> Dependency:
    """The organization's users: what an answer showing people's names depends on."""
    return Scope("users", organization_id=principal.organization_id)


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
WriterDep = Annotated[Principal, Depends(require_writer)]
ReviewerDep = Annotated[Principal, Depends(require_reviewer)]
AdminDep = Annotated[Principal, Depends(require_admin)]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
DEFAULT_PAGE = DEFAULT_LIMIT
