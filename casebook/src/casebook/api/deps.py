"""Request dependencies: the services, the authenticated principal and role checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from casebook.auth import Principal
from casebook.models import Role
from casebook.pagination import DEFAULT_LIMIT, MAX_LIMIT
from casebook.services import Services
from lockstep import AuthenticationError, PermissionDeniedError


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_principal(
    request: Request, services: Annotated[Services, Depends(get_services)]
) -> Principal:
    """The caller from ``Authorization: Bearer <access token>``; 401 otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("missing bearer token")
    return services.tokens.verify(token.strip(), "access")


def require_writer(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """Analysts and admins change case data; reviewers only read and adjudicate."""
    if not principal.has_role(Role.ANALYST):
        raise PermissionDeniedError("analyst or admin role required")
    return principal


def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.role is not Role.ADMIN:
        raise PermissionDeniedError("admin role required")
    return principal


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
WriterDep = Annotated[Principal, Depends(require_writer)]
AdminDep = Annotated[Principal, Depends(require_admin)]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
DEFAULT_PAGE = DEFAULT_LIMIT
