"""``/api/v1/organization``: the caller's organization and its settings, for its admins.

``GET`` answers from the cache with an ETag (304 on ``If-None-Match``); ``PATCH`` changes the
name, the default currency, the adjudication lease length and the report footer, honouring
``If-Match`` (412 when the settings changed since they were read). What reads them: a claim
takes the organization's lease length in its writing transaction
(:func:`casebook.adjudication.lease_minutes`), and a report prints the footer on every page
and the name in its header, as they are when the report is rendered.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from casebook.api.deps import AdminDep, ServicesDep
from casebook.auth import Principal
from casebook.models import Organization
from casebook.responses import OrganizationOut
from casebook.schemas import OrganizationUpdate
from casebook.services import Services
from lockstep import (
    JSONBytesResponse,
    NotFoundError,
    Row,
    cached,
    error_responses,
    precondition,
)

router = APIRouter(prefix="/organization", tags=["organization"])


def organization_out(org: Organization, default_lease: int) -> dict[str, Any]:
    return {
        "id": org.id,
        "slug": org.slug,
        "name": org.name,
        "default_currency": org.default_currency,
        "adjudication_lease_minutes": org.adjudication_lease_minutes,
        "adjudication_lease_minutes_default": default_lease,
        "effective_lease_minutes": org.adjudication_lease_minutes or default_lease,
        "report_footer": org.report_footer,
        "version": org.version,
    }


async def _load(session: AsyncSession, principal: Principal) -> Organization:
    org = await session.get(Organization, principal.organization_id)
    if org is None:  # the token outlived its organization
        raise NotFoundError("organization not found")
    return org


def _admins_of(principal: Principal) -> tuple[int, str]:
    """By organization *and role*: a cached answer is replayed before routing (without
    ``AdminDep``) to callers ``identify`` names alike, so keyed by the organization alone an
    admin's answer would reach its analysts (see ``casebook.api.users``)."""
    return (principal.organization_id, principal.role.value)


@router.get("", response_model=OrganizationOut, responses=error_responses(403))
@cached(
    name="organization",
    depends=lambda principal: [Row("organizations", principal.organization_id)],
    vary=_admins_of,
)
async def get_organization(principal: AdminDep, services: ServicesDep) -> JSONBytesResponse:
    """The organization's settings."""
    async with services.db.reader() as session:
        org = await _load(session, principal)
    return JSONBytesResponse(organization_out(org, _default_lease(services)))


@router.patch("", response_model=OrganizationOut, responses=error_responses(403, 412))
@precondition(get_organization)
async def update_organization(
    body: OrganizationUpdate, principal: AdminDep, services: ServicesDep
) -> JSONBytesResponse:
    """Change settings; send the ETag of the ``GET`` as ``If-Match`` to refuse (412) a change
    made meanwhile by another admin."""
    changes = body.model_dump(exclude_unset=True)
    async with services.db.writer() as session:
        org = await _load(session, principal)
        changed = {k: v for k, v in changes.items() if getattr(org, k) != v}
        for name, value in changed.items():
            setattr(org, name, value)
        if changed:
            org.version += 1
        await session.flush()
        out = organization_out(org, _default_lease(services))
    return JSONBytesResponse(out)


def _default_lease(services: Services) -> int:
    return services.settings.adjudication_lease_minutes
