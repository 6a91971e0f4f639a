"""``/api/v1/cases``: list, read, open, edit and delete cases of the caller's organization.

A case of another organization answers 404, exactly like a case that does not exist, so ids
cannot be probed across tenants.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
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
    organization_of,
)
from casebook.assignees import check_assignee
from casebook.auth import Principal
from casebook.evidence import stored_path
from casebook.imports import spool_path
from casebook.models import Case, CaseStatus, Evidence, ImportRecord, Report
from casebook.pagination import by_id, page, parse_fields, project
from casebook.responses import CaseFields, CaseListPage, CaseOut
from casebook.schemas import (
    CASE_FIELDS,
    CaseCreate,
    CaseUpdate,
    CursorQuery,
    Date,
    IdPath,
    IdQuery,
    SearchQuery,
    case_out,
    fields_param,
)
from lockstep import (
    BadRequestError,
    ConflictError,
    Dependency,
    JSONBytesResponse,
    NotFoundError,
    Row,
    Scope,
    Table,
    cached,
    error_responses,
    openapi_links,
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


def like_pattern(text: str) -> str:
    """``%text%`` for ``LIKE ... ESCAPE '\\'``: the text's own ``%`` and ``_`` match only
    themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


CASE_LINKS = openapi_links("case_id", "get_case", "update_case", "delete_case") | openapi_links(
    "case_id", "list_case_subjects", "create_subject", "list_transactions", "create_transaction"
)


@router.get("", response_model=CaseListPage)
@cached(
    name="cases",
    depends=lambda principal: [
        Scope("cases", organization_id=principal.organization_id),
        Table("users"),
    ],
    vary=organization_of,
)
async def list_cases(
    principal: PrincipalDep,
    services: ServicesDep,
    status: CaseStatus | None = None,
    priority: Annotated[int | None, Query(ge=1, le=5)] = None,
    assignee_id: IdQuery = None,
    q: SearchQuery = None,
    opened_from: Date | None = None,
    opened_to: Date | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
    fields: Annotated[str | None, fields_param(CASE_FIELDS - {"subjects"})] = None,
) -> JSONBytesResponse:
    """Cases newest first, ``limit`` at a time; pass ``next_cursor`` back as ``cursor``.
    ``opened_from`` and ``opened_to`` bound the opening day (both included)."""
    if opened_from and opened_to and opened_from > opened_to:
        raise BadRequestError("'opened_from' must not be after 'opened_to'")
    wanted = parse_fields(fields, CASE_FIELDS - {"subjects"})
    stmt: Select[Case] = select(Case).where(Case.organization_id == principal.organization_id)
    if status is not None:
        stmt = stmt.where(Case.status == status)
    if priority is not None:
        stmt = stmt.where(Case.priority == priority)
    if assignee_id is not None:
        stmt = stmt.where(Case.assignee_id == assignee_id)
    if q:
        stmt = stmt.where(Case.title.ilike(like_pattern(q), escape="\\"))
    if opened_from:
        stmt = stmt.where(Case.opened_on >= opened_from)
    if opened_to:
        stmt = stmt.where(Case.opened_on <= opened_to)
    with_assignee = wanted is None or "assignee" in wanted
    if with_assignee:
        stmt = stmt.options(selectinload(Case.assignee))
    async with services.db.reader() as session:
        cases, next_cursor = await by_id(session, stmt, Case.id, cursor, limit, "newest")
    items = [project(case_out(c, with_assignee=with_assignee), wanted) for c in cases]
    return JSONBytesResponse(page(items, next_cursor))


@router.post(
    "",
    status_code=201,
    response_model=CaseOut,
    responses={201: {"description": "Created", "links": CASE_LINKS}, **error_responses(403, 409)},
)
async def create_case(
    body: CaseCreate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.writer() as session:
        await check_assignee(session, principal, body.assignee_id)
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


@router.get("/{case_id}", response_model=CaseFields)
@cached(name="case", depends=case_dependencies, vary=organization_of)
async def get_case(
    case_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    fields: Annotated[str | None, fields_param(CASE_FIELDS)] = None,
) -> JSONBytesResponse:
    wanted = parse_fields(fields, CASE_FIELDS)
    async with services.db.reader() as session:
        case = await load_case(session, principal, case_id, with_subjects=True)
    return JSONBytesResponse(project(case_out(case, with_subjects=True), wanted))


@router.patch("/{case_id}", response_model=CaseOut, responses=error_responses(403, 412))
@precondition(get_case)
async def update_case(
    case_id: IdPath, body: CaseUpdate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    changes = body.model_dump(exclude_unset=True)
    async with services.db.writer() as session:
        case = await load_case(session, principal, case_id, with_subjects=True)
        if "assignee_id" in changes:
            await check_assignee(session, principal, changes["assignee_id"])
        for name, value in changes.items():
            setattr(case, name, value)
        if changes.get("status") is CaseStatus.CLOSED and case.closed_on is None:
            case.closed_on = dt.date.today()
        case.version += 1
        await session.flush()
        case = await load_case(session, principal, case_id, with_subjects=True)
    return JSONBytesResponse(case_out(case, with_subjects=True))


@router.delete("/{case_id}", status_code=204, responses=error_responses(403, 412))
@precondition(get_case)
async def delete_case(case_id: IdPath, principal: AdminDep, services: ServicesDep) -> Response:
    """Delete the case with its subjects, ledger, imports, reports, notes and evidence (its
    custody history too) — and their files (report PDFs, uploads waiting for their import,
    evidence files) once the delete has committed. A file
    left by a crash in between is an upload the sweep removes, or a PDF nothing links to."""
    async with services.db.writer() as session:
        case = await load_case(session, principal, case_id)
        files = await _files_of(session, services.settings.data_dir, case_id)
        await session.delete(case)
    await asyncio.to_thread(_remove, files)
    return Response(status_code=204)


async def _files_of(session: AsyncSession, data_dir: Path, case_id: int) -> list[Path]:
    reports = await session.scalars(
        select(Report.file_path).where(Report.case_id == case_id, Report.file_path != "")
    )
    imports = await session.scalars(select(ImportRecord.id).where(ImportRecord.case_id == case_id))
    kept = await session.scalars(
        select(Evidence).where(Evidence.case_id == case_id, Evidence.deleted_at.is_(None))
    )
    return (
        [Path(p) for p in reports]
        + [spool_path(data_dir, i) for i in imports]
        + [stored_path(data_dir, item) for item in kept]
    )


def _remove(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)
