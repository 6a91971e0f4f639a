"""``/api/v1/adjudication``: the review queue, claims (leases) and decisions, and
``POST /transactions/{id}/flag`` which fills it (rules in :mod:`casebook.adjudication`).

An item of another organization answers 404, exactly like an item that does not exist.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import Select, select, tuple_
from sqlalchemy.orm import selectinload

from casebook import adjudication
from casebook.adjudication import DecisionIn, FlagIn, item_out, transaction_of
from casebook.api.deps import (
    DEFAULT_PAGE,
    LimitQuery,
    PrincipalDep,
    ReviewerDep,
    ServicesDep,
    WriterDep,
    organization_of,
)
from casebook.auth import Principal
from casebook.models import AdjudicationItem, AdjudicationStatus
from casebook.pagination import decode_cursor, encode_cursor, page
from casebook.responses import AdjudicationOut, AdjudicationPage
from casebook.schemas import CursorQuery, IdPath, IdQuery
from lockstep import (
    Dependency,
    JSONBytesResponse,
    Row,
    Scope,
    cached,
    error_responses,
    openapi_links,
    precondition,
)

router = APIRouter(tags=["adjudication"])

ITEM_LINKS = openapi_links(
    "item_id",
    "get_adjudication_item",
    "claim_adjudication_item",
    "release_adjudication_item",
    "decide_adjudication_item",
)


def queue_dependencies(principal: Principal) -> list[Dependency]:
    """The organization's items, and its transactions (each item shows its own)."""
    org = principal.organization_id
    return [
        Scope("adjudication_items", organization_id=org),
        Scope("transactions", organization_id=org),
    ]


@router.get("/adjudication", response_model=AdjudicationPage)
@cached(name="adjudication_queue", depends=queue_dependencies, vary=organization_of)
async def list_adjudication_items(
    principal: PrincipalDep,
    services: ServicesDep,
    status: AdjudicationStatus | None = None,
    case_id: IdQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """The queue: most urgent first (``priority`` 1 before 5), then oldest (flagged first),
    ``limit`` at a time; ``?status=pending`` for what is left to review."""
    a = AdjudicationItem
    stmt: Select[AdjudicationItem] = select(a).where(a.organization_id == principal.organization_id)
    if status is not None:
        stmt = stmt.where(a.status == status)
    if case_id is not None:
        stmt = stmt.where(a.case_id == case_id)
    if cursor:
        priority, last_id = decode_cursor(cursor, int, int)
        stmt = stmt.where(tuple_(a.priority, a.id) > tuple_(priority, last_id))
    stmt = stmt.options(selectinload(a.transaction))
    stmt = stmt.order_by(a.priority, a.id).limit(limit + 1)
    async with services.db.reader() as session:
        items = list((await session.scalars(stmt)).all())
    more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor([items[-1].priority, items[-1].id]) if more else None
    return JSONBytesResponse(page([item_out(i, i.transaction) for i in items], next_cursor))


def item_dependencies(item_id: int, principal: Principal) -> list[Dependency]:
    """The item, and its organization's transactions (the item shows its own)."""
    return [
        Row("adjudication_items", item_id),
        Scope("transactions", organization_id=principal.organization_id),
    ]


@router.get("/adjudication/{item_id}", response_model=AdjudicationOut)
@cached(name="adjudication_item", depends=item_dependencies, vary=organization_of)
async def get_adjudication_item(
    item_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.reader() as session:
        item = await adjudication.load_item(session, principal, item_id, with_transaction=True)
    return JSONBytesResponse(item_out(item, item.transaction))


@router.post(
    "/transactions/{txn_id}/flag",
    status_code=201,
    response_model=AdjudicationOut,
    responses={201: {"description": "Created", "links": ITEM_LINKS}, **error_responses(403, 409)},
)
async def flag_transaction(
    txn_id: IdPath, body: FlagIn, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    """Send a transaction to review: a new pending item (409 when one is already pending);
    the transaction is marked ``flagged``."""
    async with services.db.writer() as session:
        item = await adjudication.flag(session, principal, txn_id, body)
        out = item_out(item, await transaction_of(session, item))
    return JSONBytesResponse(
        out, status_code=201, headers={"Location": f"/api/v1/adjudication/{item.id}"}
    )


@router.post(
    "/adjudication/{item_id}/claim",
    response_model=AdjudicationOut,
    responses=error_responses(403, 409, 412),
)
@precondition(get_adjudication_item, action="claim")
async def claim_adjudication_item(
    item_id: IdPath, principal: ReviewerDep, services: ServicesDep
) -> JSONBytesResponse:
    """Take (or renew) the lease on a pending item for the organization's lease minutes
    (``/organization``; by default ``LOCKSTEP_ADJUDICATION_LEASE_MINUTES``); 409 while
    another reviewer holds it, 403 under the four-eyes rule."""
    default = services.settings.adjudication_lease_minutes
    async with services.db.writer() as session:
        minutes = await adjudication.lease_minutes(session, principal.organization_id, default)
        item = await adjudication.claim(session, principal, item_id, minutes=minutes)
        out = item_out(item, await transaction_of(session, item))
    return JSONBytesResponse(out)


@router.post(
    "/adjudication/{item_id}/release",
    response_model=AdjudicationOut,
    responses=error_responses(403, 409, 412),
)
@precondition(get_adjudication_item, action="release")
async def release_adjudication_item(
    item_id: IdPath, principal: ReviewerDep, services: ServicesDep
) -> JSONBytesResponse:
    """Give the lease back (the holder, or an admin); 409 when it is not claimed or is
    another reviewer's."""
    async with services.db.writer() as session:
        item = await adjudication.release(session, principal, item_id)
        out = item_out(item, await transaction_of(session, item))
    return JSONBytesResponse(out)


@router.post(
    "/adjudication/{item_id}/decide",
    response_model=AdjudicationOut,
    responses=error_responses(403, 409, 412),
)
@precondition(get_adjudication_item, action="decide")
async def decide_adjudication_item(
    item_id: IdPath, body: DecisionIn, principal: ReviewerDep, services: ServicesDep
) -> JSONBytesResponse:
    """Decide a pending item you hold an unexpired lease on; 409 when it is decided already
    or your lease is missing or expired, 403 under the four-eyes rule."""
    async with services.db.writer() as session:
        item = await adjudication.decide(session, principal, item_id, body)
        out = item_out(item, await transaction_of(session, item))
    return JSONBytesResponse(out)
