"""Counterparties of a case's ledger: who the money went to and came from, with totals per
direction, and one counterparty's months (its transactions: the ledger's ``?counterparty=``).

Read from the covering index ``ix_transactions_org_case_counterparty``; the name travels in
the query (``?name=``), never in the path, so any text a ledger holds can be asked for.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from casebook.api.cases import load_case
from casebook.api.deps import DEFAULT_PAGE, LimitQuery, PrincipalDep, ServicesDep, organization_of
from casebook.models import Transaction
from casebook.pagination import decode_cursor, encode_cursor, page
from casebook.responses import CounterpartyOut, CounterpartyPage
from casebook.schemas import NO_NUL, IdPath
from lockstep import JSONBytesResponse, Row, Scope, cached

NameParam = Annotated[
    str,
    Query(
        max_length=200,
        pattern=NO_NUL,
        description='The counterparty exactly as the ledger spells it ("" for none)',
    ),
]

# A cursor holds the last name (up to 200 characters, JSON-escaped, base64): longer than ids.
NameCursorQuery = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_-]+$",
        max_length=2000,
        description="The next_cursor of the previous page (opaque)",
    ),
]

router = APIRouter(tags=["counterparties"])


def _depends(case_id: int) -> list[Any]:
    return [Row("cases", case_id), Scope("transactions", case_id=case_id)]


def _totals(rows: list[tuple[str, Any, int, int]]) -> list[dict[str, Any]]:
    """(currency, direction, count, cents) rows as sorted totals."""
    return [
        {"currency": c, "direction": d.value, "count": n, "amount_cents": int(s)}
        for c, d, n, s in sorted(rows, key=lambda r: (r[0], r[1].value))
    ]


@router.get("/cases/{case_id}/counterparties", response_model=CounterpartyPage)
@cached(name="case_counterparties", depends=_depends, vary=organization_of)
async def list_counterparties(
    case_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    cursor: NameCursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """The case's counterparties by name, each with its count, first and last posting and
    totals per currency and direction, ``limit`` names at a time."""
    t = Transaction
    scope = (t.organization_id == principal.organization_id, t.case_id == case_id)
    names = select(t.counterparty).where(*scope).group_by(t.counterparty)
    if cursor:
        (last,) = decode_cursor(cursor, str)
        names = names.where(t.counterparty > last)
    names = names.order_by(t.counterparty).limit(limit + 1)
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        wanted = list((await session.scalars(names)).all())
        more = len(wanted) > limit
        wanted = wanted[:limit]
        rows = (
            (
                await session.execute(
                    select(
                        t.counterparty,
                        t.currency,
                        t.direction,
                        func.count(),
                        func.sum(t.amount_cents),
                        func.min(t.posted_on),
                        func.max(t.posted_on),
                    )
                    .where(*scope, t.counterparty.in_(wanted))
                    .group_by(t.counterparty, t.currency, t.direction)
                )
            ).all()
            if wanted
            else []
        )
    groups: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        groups[row[0]].append(row)
    items = []
    for name in wanted:
        found = groups[name]
        items.append(
            {
                "name": name,
                "count": sum(r[3] for r in found),
                "first_posted_on": min(r[5] for r in found),
                "last_posted_on": max(r[6] for r in found),
                "totals": _totals([(r[1], r[2], r[3], r[4]) for r in found]),
            }
        )
    return JSONBytesResponse(page(items, encode_cursor([wanted[-1]]) if more else None))


@router.get("/cases/{case_id}/counterparty", response_model=CounterpartyOut)
@cached(name="case_counterparty", depends=_depends, vary=organization_of)
async def get_counterparty(
    case_id: IdPath, principal: PrincipalDep, services: ServicesDep, name: NameParam
) -> JSONBytesResponse:
    """One counterparty of the case: totals per currency and direction, and per month
    (oldest first). A name the ledger does not hold has no activity (zero totals)."""
    t = Transaction
    stmt = (
        select(t.posted_on, t.currency, t.direction, func.count(), func.sum(t.amount_cents))
        .where(
            t.organization_id == principal.organization_id,
            t.case_id == case_id,
            t.counterparty == name,
        )
        .group_by(t.posted_on, t.currency, t.direction)
    )
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        rows = (await session.execute(stmt)).all()
    totals: dict[tuple[str, Any], list[int]] = defaultdict(lambda: [0, 0])
    months: dict[tuple[str, str, Any], list[int]] = defaultdict(lambda: [0, 0])
    for posted_on, currency, direction, count, cents in rows:
        day: dt.date = posted_on
        for entry in (
            totals[(currency, direction)],
            months[(day.strftime("%Y-%m"), currency, direction)],
        ):
            entry[0] += count
            entry[1] += int(cents)
    return JSONBytesResponse(
        {
            "case_id": case_id,
            "name": name,
            "count": sum(n for n, _ in totals.values()),
            "totals": _totals([(c, d, n, s) for (c, d), (n, s) in totals.items()]),
            "months": [
                {"month": m, "currency": c, "direction": d.value, "count": n, "amount_cents": s}
                for (m, c, d), (n, s) in sorted(
                    months.items(), key=lambda i: (i[0][0], i[0][1], i[0][2].value)
                )
            ],
        }
    )
