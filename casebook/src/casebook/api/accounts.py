"""Accounts the subjects of a case hold: list, create, edit, delete, and one account's
balance over time and ledger."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select
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
from casebook.api.subjects import load_subject
from casebook.api.transactions import ledger_query, ledger_response
from casebook.auth import Principal
from casebook.iban import mask
from casebook.models import Account, Direction, Subject, Transaction
from casebook.pagination import by_id, page
from casebook.responses import AccountOut, AccountPage, BalanceOut, TransactionPage
from casebook.schemas import (
    MONTH,
    TRANSACTION_FIELDS,
    AccountCreate,
    AccountUpdate,
    CounterpartyQuery,
    CursorQuery,
    Date,
    IdPath,
    account_out,
    fields_param,
)
from lockstep import (
    BadRequestError,
    JSONBytesResponse,
    NotFoundError,
    Row,
    Scope,
    cached,
    error_responses,
    openapi_links,
    precondition,
)

ACCOUNT_LINKS = openapi_links("account_id", "get_account", "update_account", "delete_account")
MonthQuery = Annotated[str | None, Query(pattern=MONTH)]
LedgerFields = Annotated[str | None, fields_param(TRANSACTION_FIELDS)]
MAX_MONTHS = 240  # twenty years of months in one answer

router = APIRouter(tags=["accounts"])


async def load_account(
    session: AsyncSession, principal: Principal, account_id: int
) -> tuple[Account, int]:
    """The account and its case if it belongs to the caller's organization; NotFoundError
    otherwise (another organization's account is exactly a missing one)."""
    row = (
        await session.execute(
            select(Account, Subject.case_id)
            .join(Subject, Subject.id == Account.subject_id)
            .where(Account.id == account_id, Account.organization_id == principal.organization_id)
        )
    ).first()
    if row is None:
        raise NotFoundError(f"account {account_id} not found")
    return row[0], row[1]


@router.get("/cases/{case_id}/accounts", response_model=AccountPage)
@cached(
    name="case_accounts",
    depends=lambda case_id, principal: [
        Row("cases", case_id),
        Scope("subjects", case_id=case_id),
        Scope("accounts", organization_id=principal.organization_id),
    ],
    vary=organization_of,
)
async def list_case_accounts(
    case_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """The accounts held by the case's subjects, by id."""
    stmt = (
        select(Account)
        .join(Subject, Subject.id == Account.subject_id)
        .where(
            Subject.case_id == case_id,
            Subject.organization_id == principal.organization_id,
            Account.organization_id == principal.organization_id,
        )
    )
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        accounts, next_cursor = await by_id(session, stmt, Account.id, cursor, limit, "oldest")
    items = [account_out(a, case_id) for a in accounts]
    return JSONBytesResponse(page(items, next_cursor))


@router.post(
    "/subjects/{subject_id}/accounts",
    status_code=201,
    response_model=AccountOut,
    responses={201: {"description": "Created", "links": ACCOUNT_LINKS}, **error_responses(403)},
)
async def create_account(
    subject_id: IdPath, body: AccountCreate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    """An account the subject holds; the identifier is stored masked."""
    async with services.db.writer() as session:
        subject = await load_subject(session, principal, subject_id)
        account = Account(
            organization_id=principal.organization_id,
            subject_id=subject.id,
            institution=body.institution,
            number_masked=mask(body.identifier),
            currency=body.currency,
            version=1,
        )
        session.add(account)
        await session.flush()
        case_id = subject.case_id
    return JSONBytesResponse(
        account_out(account, case_id),
        status_code=201,
        headers={"Location": f"/api/v1/accounts/{account.id}"},
    )


@router.get("/accounts/{account_id}", response_model=AccountOut)
@cached(
    name="account", depends=lambda account_id: [Row("accounts", account_id)], vary=organization_of
)
async def get_account(
    account_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.reader() as session:
        account, case_id = await load_account(session, principal, account_id)
    return JSONBytesResponse(account_out(account, case_id))


@router.patch(
    "/accounts/{account_id}", response_model=AccountOut, responses=error_responses(403, 412)
)
@precondition(get_account)
async def update_account(
    account_id: IdPath, body: AccountUpdate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    changes = body.model_dump(exclude_unset=True)
    async with services.db.writer() as session:
        account, case_id = await load_account(session, principal, account_id)
        if "identifier" in changes:
            account.number_masked = mask(changes.pop("identifier"))
        for name, value in changes.items():
            setattr(account, name, value)
        account.version += 1
    return JSONBytesResponse(account_out(account, case_id))


@router.delete("/accounts/{account_id}", status_code=204, responses=error_responses(403, 412))
@precondition(get_account)
async def delete_account(
    account_id: IdPath, principal: WriterDep, services: ServicesDep
) -> Response:
    """The account goes; its transactions stay in the ledger, without an account."""
    async with services.db.writer() as session:
        account, _ = await load_account(session, principal, account_id)
        await session.delete(account)
    return Response(status_code=204)


def _month_index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def _month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@router.get(
    "/accounts/{account_id}/balance",
    response_model=BalanceOut,
    responses=error_responses(400),
)
@cached(
    name="account_balance",
    depends=lambda account_id: [
        Row("accounts", account_id),
        Scope("transactions", account_id=account_id),
    ],
    vary=organization_of,
)
async def account_balance(
    account_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    month_from: Annotated[MonthQuery, Query(alias="from")] = None,
    month_to: Annotated[MonthQuery, Query(alias="to")] = None,
) -> JSONBytesResponse:
    """The account's closing balance at the end of each month from ``from`` to ``to``
    (YYYY-MM; default: its first to its last month with entries), in its currency: credits
    less debits since its first entry. At most 240 months."""
    if month_from and month_to and month_from > month_to:
        raise BadRequestError("'from' must not be after 'to'")
    t = Transaction
    # By day from the covering index (account_id, posted_on, direction, currency, amount):
    # an account's entries, not the ledger's. Folded into months here (portable SQL).
    stmt = (
        select(t.posted_on, t.direction, t.currency, func.count(), func.sum(t.amount_cents))
        .where(t.account_id == account_id, t.organization_id == principal.organization_id)
        .group_by(t.posted_on, t.direction, t.currency)
    )
    async with services.db.reader() as session:
        account, _ = await load_account(session, principal, account_id)
        rows = (await session.execute(stmt)).all()
    activity: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # count, credits, debits
    other = 0
    for posted_on, direction, currency, count, total in rows:
        if currency != account.currency:
            other += count
            continue
        entry = activity[posted_on.year * 12 + posted_on.month - 1]
        entry[0] += count
        entry[1 if direction is Direction.CREDIT else 2] += int(total)
    first = _month_index(month_from) if month_from else min(activity, default=None)
    last = _month_index(month_to) if month_to else max(activity, default=None)
    if month_to is None and first is not None and last is not None and last < first:
        last = first
    if month_from is None and first is not None and last is not None and first > last:
        first = last
    months = []
    opening = 0
    if first is not None and last is not None:
        if last - first + 1 > MAX_MONTHS:
            raise BadRequestError(f"at most {MAX_MONTHS} months at a time")
        opening = sum(c - d for m, (_, c, d) in activity.items() if m < first)
        balance = opening
        for index in range(first, last + 1):
            count, credits, debits = activity.get(index, (0, 0, 0))
            balance += credits - debits
            months.append(
                {
                    "month": _month_name(index),
                    "count": count,
                    "credits_cents": credits,
                    "debits_cents": debits,
                    "closing_cents": balance,
                }
            )
    return JSONBytesResponse(
        {
            "account_id": account.id,
            "currency": account.currency,
            "opening_cents": opening,
            "months": months,
            "other_currency_count": other,
        }
    )


@router.get("/accounts/{account_id}/transactions", response_model=TransactionPage)
@cached(
    name="account_transactions",
    depends=lambda account_id: [
        Row("accounts", account_id),
        Scope("transactions", account_id=account_id),
    ],
    vary=organization_of,
)
async def list_account_transactions(
    account_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    date_from: Annotated[Date | None, Query(alias="from")] = None,
    date_to: Annotated[Date | None, Query(alias="to")] = None,
    direction: Direction | None = None,
    counterparty: CounterpartyQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
    fields: LedgerFields = None,
) -> JSONBytesResponse:
    """The account's ledger: its case's ledger narrowed to the account, newest first."""
    async with services.db.reader() as session:
        _, case_id = await load_account(session, principal, account_id)
    stmt = ledger_query(
        principal, case_id, date_from, date_to, None, direction, None, None, None, None,
        account_id, counterparty,
    )  # fmt: skip
    return await ledger_response(services, stmt, cursor, limit, fields)
