"""Dashboards: organization and case summaries read from the rollups, plus drill-down.

Every figure comes from a rollup table (a primary-key range read, never a GROUP BY over the
ledger) and every route is cached by the version stamps of the rollup rows of the caller's
organization: a poll that saw no change is a 304 answered before the database is touched.
Cleared activity excludes flagged transactions; flagged ones are reported on their own.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from casebook.api.cases import load_case
from casebook.api.deps import DEFAULT_PAGE, LimitQuery, PrincipalDep, ServicesDep, organization_of
from casebook.api.transactions import ledger_page
from casebook.models import Direction, Transaction
from casebook.pagination import encode_cursor, page, parse_fields, project
from casebook.responses import CaseDashboardOut, CategoriesOut, SummaryOut, TransactionPage
from casebook.rollups import CASES, FLAGGED, MONTHLY
from casebook.schemas import (
    MONTH,
    NO_NUL,
    TRANSACTION_FIELDS,
    CursorQuery,
    IdPath,
    IdQuery,
    fields_param,
    transaction_out,
)
from lockstep import BadRequestError, JSONBytesResponse, Row, Scope, cached

router = APIRouter(tags=["dashboard"])

MonthQuery = Annotated[str | None, Query(pattern=MONTH, description="YYYY-MM")]


def _organization_rollups(principal: PrincipalDep) -> list[Scope]:
    org = principal.organization_id
    return [
        Scope(MONTHLY.name, organization_id=org),
        Scope(FLAGGED.name, organization_id=org),
    ]


def _money(count: Any, amount: Any, largest: Any) -> dict[str, Any]:
    count, amount = int(count or 0), int(amount or 0)
    return {
        "count": count,
        "amount_cents": amount,
        "average_cents": round(amount / count) if count else None,
        "largest_cents": int(largest) if largest is not None else None,
    }


@router.get("/dashboard/summary", response_model=SummaryOut, response_model_exclude_none=True)
@cached(name="dashboard_summary", depends=_organization_rollups, vary=organization_of)
async def summary(
    principal: PrincipalDep, services: ServicesDep, month: MonthQuery = None
) -> JSONBytesResponse:
    """Cleared debits and credits per currency, flagged activity, and (all-time view) the
    monthly trend, for the caller's organization."""
    org = principal.organization_id
    m, f = MONTHLY.table.c, FLAGGED.table.c
    totals = MONTHLY.summarize("currency", "direction").where(m.organization_id == org)
    flagged = FLAGGED.summarize("currency").where(f.organization_id == org)
    if month is not None:
        totals = totals.where(m.month == month)
        flagged = flagged.where(f.month == month)
    async with services.db.reader() as session:
        total_rows = (await session.execute(totals)).all()
        flagged_rows = (await session.execute(flagged)).all()
        trend_rows = []
        if month is None:
            trend = MONTHLY.summarize("month", "currency", "direction")
            trend_rows = (await session.execute(trend.where(m.organization_id == org))).all()
    body: dict[str, Any] = {
        "month": month,
        "cleared": [
            {
                "currency": r.currency,
                "direction": _value(r.direction),
                **_money(r.count, r.amount_cents, r.largest_cents),
            }
            for r in total_rows
        ],
        "flagged": [
            {"currency": r.currency, **_money(r.count, r.amount_cents, r.largest_cents)}
            for r in flagged_rows
        ],
    }
    if month is None:
        body["months"] = [
            {
                "month": r.month,
                "currency": r.currency,
                "direction": _value(r.direction),
                "count": int(r.count),
                "amount_cents": int(r.amount_cents),
            }
            for r in trend_rows
        ]
    return JSONBytesResponse(body)


@router.get("/dashboard/categories", response_model=CategoriesOut)
@cached(name="dashboard_categories", depends=_organization_rollups, vary=organization_of)
async def categories(
    principal: PrincipalDep,
    services: ServicesDep,
    month_from: Annotated[str | None, Query(alias="from", pattern=MONTH)] = None,
    month_to: Annotated[str | None, Query(alias="to", pattern=MONTH)] = None,
) -> JSONBytesResponse:
    """Cleared activity per category and direction over the months ``from``..``to``
    (inclusive; either may be omitted)."""
    if month_from and month_to and month_from > month_to:
        raise BadRequestError("'from' must not be after 'to'")
    m = MONTHLY.table.c
    stmt = MONTHLY.summarize("category", "currency", "direction").where(
        m.organization_id == principal.organization_id
    )
    if month_from:
        stmt = stmt.where(m.month >= month_from)
    if month_to:
        stmt = stmt.where(m.month <= month_to)
    async with services.db.reader() as session:
        rows = (await session.execute(stmt)).all()
    return JSONBytesResponse(
        {
            "from": month_from,
            "to": month_to,
            "items": [
                {
                    "category": r.category,
                    "currency": r.currency,
                    "direction": _value(r.direction),
                    **_money(r.count, r.amount_cents, r.largest_cents),
                }
                for r in rows
            ],
        }
    )


@router.get("/dashboard/categories/{category}/transactions", response_model=TransactionPage)
@cached(
    name="dashboard_drilldown",
    depends=lambda principal: [Scope("transactions", organization_id=principal.organization_id)],
    vary=organization_of,
)
async def category_transactions(
    principal: PrincipalDep,
    services: ServicesDep,
    category: Annotated[str, Path(max_length=40, pattern=NO_NUL)],
    month: Annotated[str, Query(pattern=MONTH, description="YYYY-MM")],
    direction: Direction | None = None,
    flagged: bool = False,
    case_id: IdQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
    fields: Annotated[str | None, fields_param(TRANSACTION_FIELDS)] = None,
) -> JSONBytesResponse:
    """The transactions behind one category and month of the dashboard (cleared ones unless
    ``flagged=true``), newest first, ``limit`` at a time; pass ``next_cursor`` back."""
    wanted = parse_fields(fields, TRANSACTION_FIELDS)
    first = dt.date(int(month[:4]), int(month[5:]), 1)
    following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    t = Transaction
    stmt = select(t).where(
        t.organization_id == principal.organization_id,
        t.posted_on >= first,
        t.posted_on < following,
        t.category == category,
        t.flagged == flagged,
    )
    if direction is not None:
        stmt = stmt.where(t.direction == direction)
    if case_id is not None:
        stmt = stmt.where(t.case_id == case_id)
    stmt = ledger_page(stmt, cursor, limit)
    async with services.db.reader() as session:
        if case_id is not None:
            await load_case(session, principal, case_id)
        rows = list((await session.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([rows[-1].posted_on.isoformat(), rows[-1].id]) if more else None
    return JSONBytesResponse(page([project(transaction_out(r), wanted) for r in rows], next_cursor))


@router.get("/cases/{case_id}/dashboard", response_model=CaseDashboardOut)
@cached(
    name="case_dashboard",
    depends=lambda case_id: [Row("cases", case_id), Scope(CASES.name, case_id=case_id)],
    vary=organization_of,
)
async def case_dashboard(
    case_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    """One case's activity (flagged included): per category and direction, with the first and
    last posting dates and the largest amount."""
    c = CASES.table.c
    of_case = (c.organization_id == principal.organization_id, c.case_id == case_id)
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        by_category = (
            await session.execute(
                CASES.summarize("category", "currency", "direction").where(*of_case)
            )
        ).all()
        totals = (
            await session.execute(CASES.summarize("currency", "direction").where(*of_case))
        ).all()

    def dates(r: Any) -> dict[str, Any]:
        return {"first_posted_on": r.first_posted_on, "last_posted_on": r.last_posted_on}

    return JSONBytesResponse(
        {
            "case_id": case_id,
            "totals": [
                {
                    "currency": r.currency,
                    "direction": _value(r.direction),
                    **_money(r.count, r.amount_cents, r.largest_cents),
                    **dates(r),
                }
                for r in totals
            ],
            "categories": [
                {
                    "category": r.category,
                    "currency": r.currency,
                    "direction": _value(r.direction),
                    **_money(r.count, r.amount_cents, r.largest_cents),
                    **dates(r),
                }
                for r in by_category
            ],
        }
    )


def _value(direction: Any) -> str:
    return str(getattr(direction, "value", direction))
