"""The audit trail of a case and of a user (:mod:`casebook.audit`), and a case's as CSV.

Entries are those of the caller's organization's chain only; another organization's case or
user is a 404, exactly like one that does not exist. Not cached: the trail's table is not a
cache dependency yet (docs/audit.md, Limits).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, select

from casebook.api.cases import load_case
from casebook.api.deps import DEFAULT_PAGE, AdminDep, LimitQuery, PrincipalDep, ServicesDep
from casebook.audit import (
    CSV_HEADER,
    case_entries,
    csv_rows,
    entries_after,
    entry_out,
    user_entries,
)
from casebook.models import User
from casebook.pagination import decode_cursor, encode_cursor, page
from casebook.responses import AuditPage
from casebook.schemas import CursorQuery, IdPath
from casebook.services import Services
from casebook.spreadsheet import inert
from lockstep import JSONBytesResponse, NotFoundError, error_responses, file_response
from lockstep.audit import audit_table

router = APIRouter(tags=["audit"])
EXPORT_BATCH = 1_000


async def _page(
    services: Services, stmt: Select[Any], cursor: str | None, limit: int
) -> JSONBytesResponse:
    before = decode_cursor(cursor, int)[0] if cursor else None
    async with services.db.reader() as session:
        rows = (await session.execute(entries_after(stmt, before).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor([rows[-1].id]) if more else None
    return JSONBytesResponse(page([entry_out(r) for r in rows], next_cursor))


@router.get("/cases/{case_id}/audit", response_model=AuditPage)
async def case_audit(
    case_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """Every audited write touching the case, newest first: the case itself, its subjects,
    accounts, transactions, adjudication items, imports and reports (deleted ones too)."""
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
    stmt = case_entries(principal.organization_id, case_id)
    return await _page(services, stmt, cursor, limit)


@router.get("/users/{user_id}/audit", response_model=AuditPage, responses=error_responses(403))
async def user_audit(
    user_id: IdPath,
    principal: AdminDep,
    services: ServicesDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """What one user of the organization wrote (through the API), newest first."""
    async with services.db.reader() as session:
        found = await session.scalar(
            select(User.id).where(
                User.id == user_id, User.organization_id == principal.organization_id
            )
        )
    if found is None:
        raise NotFoundError(f"user {user_id} not found")
    stmt = user_entries(principal.organization_id, user_id)
    return await _page(services, stmt, cursor, limit)


@router.get(
    "/cases/{case_id}/audit.csv",
    response_model=None,
    responses=file_response(
        "text/csv",
        "The case's audit trail, oldest first, one line per changed field: seq, at, actor, "
        "table, row_key, op, field, before, after, hash",
    ),
)
async def case_audit_csv(
    case_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> StreamingResponse:
    """The case's trail as CSV, oldest first; cells a spreadsheet would evaluate are
    prefixed with ``'``."""
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
    newest_first = case_entries(principal.organization_id, case_id)

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(CSV_HEADER)
        yield buffer.getvalue()
        # The matching ids first (small), then the entries a batch at a time, oldest first.
        async with services.db.reader() as session:
            ids = sorted(await session.scalars(select(newest_first.subquery().c.id)))
        for start in range(0, len(ids), EXPORT_BATCH):
            batch = ids[start : start + EXPORT_BATCH]
            async with services.db.reader() as session:
                rows = (
                    await session.execute(
                        select(audit_table)
                        .where(audit_table.c.id.in_(batch))
                        .order_by(audit_table.c.id)
                    )
                ).all()
            buffer.seek(0)
            buffer.truncate()
            for row in rows:
                for line in csv_rows(entry_out(row)):
                    out.writerow([inert(str(cell)) for cell in line])
            yield buffer.getvalue()

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="case-{case_id}-audit.csv"'},
    )
