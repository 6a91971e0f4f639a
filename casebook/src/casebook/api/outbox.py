"""``GET /api/v1/outbox``: the notifications the default sender delivered, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from casebook.api.deps import DEFAULT_PAGE, LimitQuery, PrincipalDep, ServicesDep
from casebook.models import OutboxMessage
from casebook.responses import OutboxPage
from casebook.schemas import IdQuery
from lockstep import JSONBytesResponse

router = APIRouter(tags=["outbox"])


def message_out(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "channel": message.channel,
        "recipient": message.recipient,
        "subject": message.subject,
        "body": message.body,
        "job_id": message.job_id,
        "created_at": message.created_at,
    }


@router.get("/outbox", response_model=OutboxPage)
async def list_outbox(
    principal: PrincipalDep,
    services: ServicesDep,
    before: IdQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """Messages of the caller's organization; pass the last ``id`` as ``before`` to page."""
    stmt = select(OutboxMessage).where(OutboxMessage.organization_id == principal.organization_id)
    if before is not None:
        stmt = stmt.where(OutboxMessage.id < before)
    stmt = stmt.order_by(OutboxMessage.id.desc()).limit(limit)
    async with services.db.reader() as session:
        items = [message_out(m) for m in (await session.scalars(stmt)).all()]
    return JSONBytesResponse(
        {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}
    )
