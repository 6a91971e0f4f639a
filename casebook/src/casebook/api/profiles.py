"""Import profiles: how an organization reads each bank's statements.

A profile is saved while importing (``POST /cases/{id}/imports?save_profile=NAME``, with the
mapping that import used); later files whose header has the same fingerprint are read with
it, without questions. ``GET /import-profiles`` lists them (any role), ``DELETE
/import-profiles/{id}`` removes one (analyst, admin).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import select

from casebook.api.deps import PrincipalDep, ServicesDep, WriterDep
from casebook.models import ImportProfile
from casebook.responses import ImportProfileList
from casebook.schemas import IdPath
from lockstep import JSONBytesResponse, NotFoundError, error_responses

router = APIRouter(tags=["imports"])


def profile_out(profile: ImportProfile) -> dict[str, Any]:
    mapping = json.loads(profile.mapping)
    return {
        "id": profile.id,
        "name": profile.name,
        "fingerprint": profile.fingerprint,
        "header": mapping.get("header", []),
        "columns": mapping.get("columns", {}),
        "settings": {
            k: mapping.get(k) for k in ("decimal", "date_order", "sign", "currency", "account")
        },
        "created_at": profile.created_at,
        "updated_at": profile.updated_at,
    }


@router.get("/import-profiles", response_model=ImportProfileList)
async def list_profiles(principal: PrincipalDep, services: ServicesDep) -> JSONBytesResponse:
    """The organization's import profiles, by name."""
    async with services.db.reader() as session:
        profiles = (
            await session.scalars(
                select(ImportProfile)
                .where(ImportProfile.organization_id == principal.organization_id)
                .order_by(ImportProfile.name)
            )
        ).all()
    return JSONBytesResponse({"items": [profile_out(p) for p in profiles]})


@router.delete(
    "/import-profiles/{profile_id}",
    status_code=204,
    responses={204: {"description": "Removed"}, **error_responses(403)},
)
async def delete_profile(
    profile_id: IdPath, principal: WriterDep, services: ServicesDep
) -> Response:
    """Remove a profile; files of its bank are asked about again."""
    async with services.db.writer() as session:
        profile = await session.scalar(
            select(ImportProfile).where(
                ImportProfile.id == profile_id,
                ImportProfile.organization_id == principal.organization_id,
            )
        )
        if profile is None:
            raise NotFoundError(f"import profile {profile_id} not found")
        await session.delete(profile)
    return Response(status_code=204)
