"""The money: a case's ledger of transactions, newest first, filterable and keyset-paginated."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from casebook.api.cases import load_case
from casebook.api.deps import (
    DEFAULT_PAGE,
    LimitQuery,
    PrincipalDep,
    ServicesDep,
    WriterDep,
    organization_of,
)
from casebook.auth import Principal
from casebook.models import Direction, Subject, Transaction
from casebook.pagination import decode_cursor, encode_cursor, page, parse_fields, project
from casebook.responses import TransactionFields, TransactionOut, TransactionPage
from casebook.schemas import (
    TRANSACTION_FIELDS,
    CategoryQuery,
    CounterpartyQuery,
    CursorQuery,
    Date,
    IdPath,
    IdQuery,
    MoneyQuery,
    TransactionCreate,
    TransactionUpdate,
    fields_param,
    format_cents,
    to_cents,
    transaction_out,
)
from casebook.spreadsheet import inert
from lockstep import (
    BadRequestError,
    JSONBytesResponse,
    NotFoundError,
    Row,
    Scope,
    ValidationFailedError,
    cached,
    error_responses,
    file_response,
    openapi_links,
    precondition,
)

FieldsQuery = Annotated[str | None, fields_param(TRANSACTION_FIELDS)]
TRANSACTION_LINKS = openapi_links(
    "txn_id", "get_transaction", "update_transaction", "delete_transaction"
)

T = TypeVar("T")

router = APIRouter(tags=["transactions"])


def ledger_page(stmt: Select[T], cursor: str | None, limit: int) -> Select[T]:
    """Transactions newest posting first (ties by id), after ``cursor``, ``limit`` + 1 rows
    (the extra row tells whether there is a next page). BadRequestError for a bad cursor."""
    t = Transaction
    if cursor:
        posted, last_id = decode_cursor(cursor, dt.date, int)
        stmt = stmt.where(tuple_(t.posted_on, t.id) < tuple_(posted, last_id))
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


async def check_subject(
    session: AsyncSession, principal: Principal, case_id: int, subject_id: int
) -> None:
    """ValidationFailedError unless the subject is one of the case's. A missing subject,
    another case's and another organization's all get this one answer: nothing to probe."""
    subject = await session.scalar(
        select(Subject.id).where(
            Subject.id == subject_id,
            Subject.case_id == case_id,
            Subject.organization_id == principal.organization_id,
        )
    )
    if subject is None:
        raise ValidationFailedError(
            "subject_id must be a subject of this case",
            details=[
                {
                    "loc": ["body", "subject_id"],
                    "msg": "not a subject of this case",
                    "type": "unknown_reference",
                }
            ],
        )


def ledger_query(
    principal: Principal,
    case_id: int,
    date_from: dt.date | None,
    date_to: dt.date | None,
    category: str | None,
    direction: Direction | None,
    flagged: bool | None,
    subject_id: int | None,
    min_amount: str | None,
    max_amount: str | None,
    account_id: int | None = None,
    counterparty: str | None = None,
) -> Select[Transaction]:
    """The case's transactions matching the ledger's filters (the list, its export, an
    account's ledger and a counterparty's drill-down)."""
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
    if account_id is not None:
        stmt = stmt.where(t.account_id == account_id)
    if counterparty is not None:
        stmt = stmt.where(t.counterparty == counterparty)
    return stmt


LEDGER_CSV_HEADER = [
    "id", "posted_on", "amount", "currency", "direction", "category", "counterparty",
    "description", "subject_id", "flagged",
]  # fmt: skip
EXPORT_BATCH = 2_000


@router.get(
    "/cases/{case_id}/transactions.csv",
    response_model=None,
    responses=file_response(
        "text/csv",
        "The case's ledger with the list's filters applied, newest posting first: "
        + ", ".join(LEDGER_CSV_HEADER),
    ),
)
async def export_transactions(
    case_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    date_from: Annotated[Date | None, Query(alias="from")] = None,
    date_to: Annotated[Date | None, Query(alias="to")] = None,
    category: CategoryQuery = None,
    direction: Direction | None = None,
    flagged: bool | None = None,
    subject_id: IdQuery = None,
    min_amount: MoneyQuery = None,
    max_amount: MoneyQuery = None,
    account_id: IdQuery = None,
    counterparty: CounterpartyQuery = None,
) -> StreamingResponse:
    """The ledger as CSV, streamed a page at a time (the same filters as the list, every
    page); text cells a spreadsheet would evaluate are prefixed with ``'``."""
    stmt = ledger_query(
        principal, case_id, date_from, date_to, category, direction, flagged, subject_id,
        min_amount, max_amount, account_id, counterparty,
    )  # fmt: skip
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(LEDGER_CSV_HEADER)
        cursor: str | None = None
        while True:
            async with services.db.reader() as session:
                rows = list((await session.scalars(ledger_page(stmt, cursor, EXPORT_BATCH))).all())
            more = len(rows) > EXPORT_BATCH
            rows = rows[:EXPORT_BATCH]
            for r in rows:
                out.writerow(
                    [
                        r.id,
                        r.posted_on.isoformat(),
                        format_cents(r.amount_cents),
                        r.currency,
                        r.direction.value,
                        inert(r.category),
                        inert(r.counterparty),
                        inert(r.description),
                        r.subject_id or "",
                        "true" if r.flagged else "false",
                    ]
                )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if not more:
                return
            cursor = encode_cursor([rows[-1].posted_on.isoformat(), rows[-1].id])

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="case-{case_id}-ledger.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/cases/{case_id}/transactions", response_model=TransactionPage)
@cached(
    name="case_transactions",
    depends=lambda case_id: [Row("cases", case_id), Scope("transactions", case_id=case_id)],
    vary=organization_of,
)
async def list_transactions(
    case_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    date_from: Annotated[Date | None, Query(alias="from")] = None,
    date_to: Annotated[Date | None, Query(alias="to")] = None,
    category: CategoryQuery = None,
    direction: Direction | None = None,
    flagged: bool | None = None,
    subject_id: IdQuery = None,
    min_amount: MoneyQuery = None,
    max_amount: MoneyQuery = None,
    account_id: IdQuery = None,
    counterparty: CounterpartyQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
    fields: FieldsQuery = None,
) -> JSONBytesResponse:
    """Transactions of one case, newest posting first (ties by id), ``limit`` at a time;
    ``account_id`` and ``counterparty`` narrow it to one account's or one counterparty's."""
    stmt = ledger_query(
        principal, case_id, date_from, date_to, category, direction, flagged, subject_id,
        min_amount, max_amount, account_id, counterparty,
    )  # fmt: skip
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
    return await ledger_response(services, stmt, cursor, limit, fields)


async def ledger_response(
    services: ServicesDep, stmt: Select[Transaction], cursor: str | None, limit: int,
    fields: str | None,
) -> JSONBytesResponse:  # fmt: skip
    """One page of ``stmt`` (a :func:`ledger_query`) as the ledger list answers it."""
    wanted = parse_fields(fields, TRANSACTION_FIELDS)
    stmt = ledger_page(stmt, cursor, limit)
    async with services.db.reader() as session:
        rows = list((await session.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([rows[-1].posted_on.isoformat(), rows[-1].id]) if more else None
    return JSONBytesResponse(page([project(transaction_out(r), wanted) for r in rows], next_cursor))


@router.post(
    "/cases/{case_id}/transactions",
    status_code=201,
    response_model=TransactionOut,
    responses={
        201: {"description": "Created", "links": TRANSACTION_LINKS},
        **error_responses(403),
    },
)
async def create_transaction(
    case_id: IdPath, body: TransactionCreate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.writer() as session:
        await load_case(session, principal, case_id)
        if body.subject_id is not None:
            await check_subject(session, principal, case_id, body.subject_id)
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


@router.get("/transactions/{txn_id}", response_model=TransactionFields)
@cached(
    name="transaction",
    depends=lambda txn_id: [Row("transactions", txn_id)],
    vary=organization_of,
)
async def get_transaction(
    txn_id: IdPath, principal: PrincipalDep, services: ServicesDep, fields: FieldsQuery = None
) -> JSONBytesResponse:
    wanted = parse_fields(fields, TRANSACTION_FIELDS)
    async with services.db.reader() as session:
        txn = await load_transaction(session, principal, txn_id)
    return JSONBytesResponse(project(transaction_out(txn), wanted))


@router.patch(
    "/transactions/{txn_id}", response_model=TransactionOut, responses=error_responses(403, 412)
)
@precondition(get_transaction)
async def update_transaction(
    txn_id: IdPath, body: TransactionUpdate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    changes = body.model_dump(exclude_unset=True)
    async with services.db.writer() as session:
        txn = await load_transaction(session, principal, txn_id)
        if changes.get("subject_id") is not None:
            await check_subject(session, principal, txn.case_id, changes["subject_id"])
        for name, value in changes.items():
            setattr(txn, name, value)
        txn.version += 1
    return JSONBytesResponse(transaction_out(txn))


@router.delete("/transactions/{txn_id}", status_code=204, responses=error_responses(403, 412))
@precondition(get_transaction)
async def delete_transaction(
    txn_id: IdPath, principal: WriterDep, services: ServicesDep
) -> Response:
    async with services.db.writer() as session:
        txn = await load_transaction(session, principal, txn_id)
        await session.delete(txn)
    return Response(status_code=204)
