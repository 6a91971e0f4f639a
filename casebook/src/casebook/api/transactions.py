"""The money: a case's ledger of transactions, newest first, filterable and keyset-paginated."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Response
from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from casebook.api.cases import load_case
from casebook.api.deps import DEFAULT_PAGE, LimitQuery, PrincipalDep, ServicesDep, WriterDep
from casebook.api.subjects import load_subject
from casebook.auth import Principal
from casebook.models import Direction, Transaction
from casebook.pagination import decode_cursor, encode_cursor, page, parse_fields, project
from casebook.schemas import (
    TRANSACTION_FIELDS,
    TransactionCreate,
    TransactionUpdate,
    to_cents,
    transaction_out,
)
from lockstep import (
    BadRequestError,
    JSONBytesResponse,
    NotFoundError,
    Row,
    Scope,
    cached,
    precondition,
)

T = TypeVar("T")

router = APIRouter(tags=["transactions"])


def ledger_page(stmt: Select[T], cursor: str | None, limit: int) -> Select[T]:
    """Transactions newest posting first (ties by id), after ``cursor``, ``limit`` + 1 rows
    (the extra row tells whether there is a next page). BadRequestError for a bad cursor."""
    t = Transaction
    if cursor:
        last_posted, last_id = decode_cursor(cursor, 2)
        try:
            posted = dt.date.fromisoformat(str(last_posted))
        except ValueError:
            raise BadRequestError("invalid cursor") from None
        stmt = stmt.where(tuple_(t.posted_on, t.id) < tuple_(posted, int(last_id)))
    return stmt.order_by(t.posted_on.desc(), t.id.desc()).limit(limit + 1)


async def load_transaction(session: AsyncSession, principal: Principal, txn_id: int) -> Transaction:
    txn = await session.scalar(
        select(Transaction).where(
            Transaction.id == txn_id, Transaction.organization_id == principal.organization_id
        )
    )
    if txn is None:
        raise NotFoundError(f"transaction {txn_id} not found")
    return txn


@router.get("/cases/{case_id}/transactions")
@cached(
    name="case_transactions",
    depends=lambda case_id: [Row("cases", case_id), Scope("transactions", case_id=case_id)],
    vary=lambda principal: principal.organization_id,
)
async def list_transactions(
    case_id: int,
    principal: PrincipalDep,
    services: ServicesDep,
    date_from: Annotated[dt.date | None, Query(alias="from")] = None,
    date_to: Annotated[dt.date | None, Query(alias="to")] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    direction: Direction | None = None,
    flagged: bool | None = None,
    subject_id: int | None = None,
    min_amount: Annotated[Decimal | None, Query(ge=0)] = None,
    max_amount: Annotated[Decimal | None, Query(ge=0)] = None,
    cursor: str | None = None,
    limit: LimitQuery = DEFAULT_PAGE,
    fields: str | None = None,
) -> JSONBytesResponse:
    """Transactions of one case, newest posting first (ties by id), ``limit`` at a time."""
    wanted = parse_fields(fields, TRANSACTION_FIELDS)
    if date_from and date_to and date_from > date_to:
        raise BadRequestError("'from' must not be after 'to'")
    t = Transaction
    stmt = select(t).where(t.organization_id == principal.organization_id, t.case_id == case_id)
    if date_from:
        stmt = stmt.where(t.posted_on >= date_from)
    if date_to:
        stmt = stmt.where(t.posted_on <= date_to)
    if category:
        stmt = stmt.where(t.category == category)
    if direction:
        stmt = stmt.where(t.direction == direction)
    if flagged is not None:
        stmt = stmt.where(t.flagged == flagged)
    if subject_id is not None:
        stmt = stmt.where(t.subject_id == subject_id)
    if min_amount is not None:
        stmt = stmt.where(t.amount_cents >= to_cents(min_amount))
    if max_amount is not None:
        stmt = stmt.where(t.amount_cents <= to_cents(max_amount))
    stmt = ledger_page(stmt, cursor, limit)
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        rows = list((await session.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([rows[-1].posted_on.isoformat(), rows[-1].id]) if more else None
    return JSONBytesResponse(page([project(transaction_out(r), wanted) for r in rows], next_cursor))


@router.post("/cases/{case_id}/transactions", status_code=201)
async def create_transaction(
    case_id: int, body: TransactionCreate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.writer() as session:
        await load_case(session, principal, case_id)
        if body.subject_id is not None:
            subject = await load_subject(session, principal, body.subject_id)
            if subject.case_id != case_id:
                raise BadRequestError("subject_id belongs to another case")
        data = body.model_dump(exclude={"amount"})
        txn = Transaction(
            organization_id=principal.organization_id,
            case_id=case_id,
            amount_cents=to_cents(body.amount),
            **data,
        )
        session.add(txn)
        await session.flush()
    return JSONBytesResponse(
        transaction_out(txn),
        status_code=201,
        headers={"Location": f"/api/v1/transactions/{txn.id}"},
    )


@router.get("/transactions/{txn_id}")
@cached(
    name="transaction",
    depends=lambda txn_id: [Row("transactions", txn_id)],
    vary=lambda principal: principal.organization_id,
)
async def get_transaction(
    txn_id: int, principal: PrincipalDep, services: ServicesDep, fields: str | None = None
) -> JSONBytesResponse:
    wanted = parse_fields(fields, TRANSACTION_FIELDS)
    async with services.db.reader() as session:
        txn = await load_transaction(session, principal, txn_id)
    return JSONBytesResponse(project(transaction_out(txn), wanted))


@router.patch("/transactions/{txn_id}")
@precondition(get_transaction)
async def update_transaction(
    txn_id: int, body: TransactionUpdate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    changes = body.model_dump(exclude_unset=True)
    async with services.db.writer() as session:
        txn = await load_transaction(session, principal, txn_id)
        if changes.get("subject_id") is not None:
            subject = await load_subject(session, principal, changes["subject_id"])
            if subject.case_id != txn.case_id:
                raise BadRequestError("subject_id belongs to another case")
        for name, value in changes.items():
            setattr(txn, name, value)
        txn.version += 1
    return JSONBytesResponse(transaction_out(txn))


@router.delete("/transactions/{txn_id}", status_code=204)
@precondition(get_transaction)
async def delete_transaction(txn_id: int, principal: WriterDep, services: ServicesDep) -> Response:
    async with services.db.writer() as session:
        txn = await load_transaction(session, principal, txn_id)
        await session.delete(txn)
    return Response(status_code=204)
