"""``/api/v1/cases``: list, read, open, edit and delete cases of the caller's organization.

A case of another organization answers 404, exactly like a case that does not exist, so ids
cannot be probed across tenants.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from casebook.api.deps import (
    DEFAULT_PAGE,
    AdminDep,
    LimitQuery,
    PrincipalDep,
    ServicesDep,
    WriterDep,
)
from casebook.auth import Principal
from casebook.models import Case, CaseStatus, User
from casebook.pagination import decode_cursor, encode_cursor, page, parse_fields, project
from casebook.schemas import CASE_FIELDS, CaseCreate, CaseUpdate, case_out
from lockstep import (
    ConflictError,
    Dependency,
    JSONBytesResponse,
    NotFoundError,
    Row,
    Scope,
    Table,
    ValidationFailedError,
    cached,
    precondition,
)

router = APIRouter(prefix="/cases", tags=["cases"])


async def load_case(
    session: AsyncSession, principal: Principal, case_id: int, *, with_subjects: bool = False
) -> Case:
    """The case if it belongs to the caller's organization; NotFoundError otherwise."""
    stmt = select(Case).where(Case.id == case_id, Case.organization_id == principal.organization_id)
    stmt = stmt.options(selectinload(Case.assignee))
    if with_subjects:
        stmt = stmt.options(selectinload(Case.subjects))
    case = await session.scalar(stmt)
    if case is None:
        raise NotFoundError(f"case {case_id} not found")
    return case


async def _check_assignee(session: AsyncSession, principal: Principal, user_id: int | None) -> None:
    if user_id is None:
        return
    found = await session.scalar(
        select(User.id).where(User.id == user_id, User.organization_id == principal.organization_id)
    )
    if found is None:
        raise ValidationFailedError(
            "assignee must be a user of your organization",
            details=[
                {"loc": ["body", "assignee_id"], "msg": "unknown user", "type": "value_error"}
            ],
        )


def _org(principal: Principal) -> int:
    return principal.organization_id


@router.get("")
@cached(
    name="cases",
    depends=lambda principal: [
        Scope("cases", organization_id=principal.organization_id),
        Table("users"),
    ],
    vary=_org,
)
async def list_cases(
    principal: PrincipalDep,
    services: ServicesDep,
    status: CaseStatus | None = None,
    assignee_id: int | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    cursor: str | None = None,
    limit: LimitQuery = DEFAULT_PAGE,
    fields: str | None = None,
) -> JSONBytesResponse:
    """Cases newest first, ``limit`` at a time; pass ``next_cursor`` back as ``cursor``."""
    wanted = parse_fields(fields, CASE_FIELDS - {"subjects"})
    stmt: Select[Case] = select(Case).where(Case.organization_id == principal.organization_id)
    if status is not None:
        stmt = stmt.where(Case.status == status)
    if assignee_id is not None:
        stmt = stmt.where(Case.assignee_id == assignee_id)
    if q:
        stmt = stmt.where(Case.title.ilike(f"%{q}%"))
    if cursor:
        (last_id,) = decode_cursor(cursor, 1)
        stmt = stmt.where(Case.id < int(last_id))
    with_assignee = wanted is None or "assignee" in wanted
    if with_assignee:
        stmt = stmt.options(selectinload(Case.assignee))
    stmt = stmt.order_by(Case.id.desc()).limit(limit + 1)
    async with services.db.reader() as session:
        cases = list((await session.scalars(stmt)).all())
    more = len(cases) > limit
    cases = cases[:limit]
    items = [project(case_out(c, with_assignee=with_assignee), wanted) for c in cases]
    return JSONBytesResponse(page(items, encode_cursor([cases[-1].id]) if more else None))


@router.post("", status_code=201)
async def create_case(
    body: CaseCreate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.writer() as session:
        await _check_assignee(session, principal, body.assignee_id)
        case = Case(
            organization_id=principal.organization_id,
            reference=body.reference,
            title=body.title,
            description=body.description,
            priority=body.priority,
            assignee_id=body.assignee_id,
            opened_on=body.opened_on or dt.date.today(),
        )
        session.add(case)
        try:
            await session.flush()
        except IntegrityError:
            raise ConflictError(
                f"a case with reference {body.reference!r} already exists"
            ) from None
        case = await load_case(session, principal, case.id, with_subjects=True)
    return JSONBytesResponse(
        case_out(case, with_subjects=True),
        status_code=201,
        headers={"Location": f"/api/v1/cases/{case.id}"},
    )


def case_dependencies(case_id: int) -> list[Dependency]:
    """What the case detail shows: the case, its subjects, and the assignee's name."""
    return [Row("cases", case_id), Scope("subjects", case_id=case_id), Table("users")]


@router.get("/{case_id}")
@cached(name="case", depends=case_dependencies, vary=_org)
async def get_case(
    case_id: int, principal: PrincipalDep, services: ServicesDep, fields: str | None = None
) -> JSONBytesResponse:
    wanted = parse_fields(fields, CASE_FIELDS)
    async with services.db.reader() as session:
        case = await load_case(session, principal, case_id, with_subjects=True)
    return JSONBytesResponse(project(case_out(case, with_subjects=True), wanted))


@router.patch("/{case_id}")
@precondition(get_case)
async def update_case(
    case_id: int, body: CaseUpdate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    changes = body.model_dump(exclude_unset=True)
    async with services.db.writer() as session:
        case = await load_case(session, principal, case_id, with_subjects=True)
        if "assignee_id" in changes:
            await _check_assignee(session, principal, changes["assignee_id"])
        for name, value in changes.items():
            setattr(case, name, value)
        if changes.get("status") is CaseStatus.CLOSED and case.closed_on is None:
            case.closed_on = dt.date.today()
        case.version += 1
        await session.flush()
        case = await load_case(session, principal, case_id, with_subjects=True)
    return JSONBytesResponse(case_out(case, with_subjects=True))


@router.delete("/{case_id}", status_code=204)
@precondition(get_case)
async def delete_case(case_id: int, principal: AdminDep, services: ServicesDep) -> Response:
    async with services.db.writer() as session:
        case = await load_case(session, principal, case_id)
        await session.delete(case)
    return Response(status_code=204)
