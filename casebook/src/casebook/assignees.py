"""Who may be assigned a case: a user of the caller's organization. One check for every
way a case is assigned (the REST routes and the offline ``case.update`` mutation)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from casebook.auth import Principal
from casebook.models import User
from lockstep import ValidationFailedError


async def check_assignee(session: AsyncSession, principal: Principal, user_id: int | None) -> None:
    """Nothing for ``None`` (unassigned) or a user of the caller's organization; else
    :class:`~lockstep.ValidationFailedError` (422, ``unknown_reference``), the same for a
    user of another organization as for one that does not exist."""
    if user_id is None:
        return
    found = await session.scalar(
        select(User.id).where(User.id == user_id, User.organization_id == principal.organization_id)
    )
    if found is None:
        raise ValidationFailedError(
            "assignee must be a user of your organization",
            details=[
                {
                    "loc": ["body", "assignee_id"],
                    "msg": "not a user of your organization",
                    "type": "unknown_reference",
                }
            ],
        )
