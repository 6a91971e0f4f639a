"""Subjects (people and companies under investigation) of a case."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from sqlalchemy import select
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
from casebook.models import Subject
from casebook.pagination import by_id, page, parse_fields, project
from casebook.responses import SubjectFields, SubjectOut, SubjectPage
from casebook.schemas import (
    SUBJECT_FIELDS,
    CursorQuery,
    IdPath,
    IdQuery,
    SubjectCreate,
    SubjectUpdate,
    fields_param,
    subject_out,
)
from lockstep import (
    JSONBytesResponse,
    NotFoundError,
    Row,
    Scope,
    cached,
    error_responses,
    openapi_links,
    precondition,
)

FieldsQuery = Annotated[str | None, fields_param(SUBJECT_FIELDS)]
SUBJECT_LINKS = openapi_links("subject_id", "get_subject", "update_subject", "delete_subject")

router = APIRouter(tags=["subjects"])


async def load_subject(session: AsyncSession, principal: Principal, subject_id: int) -> Subject:
    subject = await session.scalar(
        select(Subject).where(
            Subject.id == subject_id, Subject.organization_id == principal.organization_id
        )
    )
    if subject is None:
        raise NotFoundError(f"subject {subject_id} not found")
    return subject


@router.get("/subjects", response_model=SubjectPage)
@cached(
    name="subjects",
    depends=lambda principal: [Scope("subjects", organization_id=principal.organization_id)],
    vary=organization_of,
)
async def list_subjects(
    principal: PrincipalDep,
    services: ServicesDep,
    case_id: IdQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
    fields: FieldsQuery = None,
) -> JSONBytesResponse:
    """Subjects of the organization (optionally of one case), oldest first."""
    return await _subject_page(principal, services, case_id, cursor, limit, fields)


async def _subject_page(
    principal: Principal,
    services: ServicesDep,
    case_id: int | None,
    cursor: str | None,
    limit: int,
    fields: str | None,
) -> JSONBytesResponse:
    wanted = parse_fields(fields, SUBJECT_FIELDS)
    stmt = select(Subject).where(Subject.organization_id == principal.organization_id)
    if case_id is not None:
        stmt = stmt.where(Subject.case_id == case_id)
    async with services.db.reader() as session:
        subjects, next_cursor = await by_id(session, stmt, Subject.id, cursor, limit, "oldest")
    items = [project(subject_out(s), wanted) for s in subjects]
    return JSONBytesResponse(page(items, next_cursor))


@router.get("/cases/{case_id}/subjects", response_model=SubjectPage)
@cached(
    name="case_subjects",
    depends=lambda case_id: [Row("cases", case_id), Scope("subjects", case_id=case_id)],
    vary=organization_of,
)
async def list_case_subjects(
    case_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
    fields: FieldsQuery = None,
) -> JSONBytesResponse:
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
    return await _subject_page(principal, services, case_id, cursor, limit, fields)


@router.post(
    "/cases/{case_id}/subjects",
    status_code=201,
    response_model=SubjectOut,
    responses={201: {"description": "Created", "links": SUBJECT_LINKS}, **error_responses(403)},
)
async def create_subject(
    case_id: IdPath, body: SubjectCreate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.writer() as session:
        await load_case(session, principal, case_id)
        subject = Subject(
            organization_id=principal.organization_id, case_id=case_id, **body.model_dump()
        )
        session.add(subject)
        await session.flush()
    return JSONBytesResponse(
        subject_out(subject),
        status_code=201,
        headers={"Location": f"/api/v1/subjects/{subject.id}"},
    )


@router.get("/subjects/{subject_id}", response_model=SubjectFields)
@cached(
    name="subject", depends=lambda subject_id: [Row("subjects", subject_id)], vary=organization_of
)
async def get_subject(
    subject_id: IdPath, principal: PrincipalDep, services: ServicesDep, fields: FieldsQuery = None
) -> JSONBytesResponse:
    wanted = parse_fields(fields, SUBJECT_FIELDS)
    async with services.db.reader() as session:
        subject = await load_subject(session, principal, subject_id)
    return JSONBytesResponse(project(subject_out(subject), wanted))


@router.patch(
    "/subjects/{subject_id}", response_model=SubjectOut, responses=error_responses(403, 412)
)
@precondition(get_subject)
async def update_subject(
    subject_id: IdPath, body: SubjectUpdate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.writer() as session:
        subject = await load_subject(session, principal, subject_id)
        for name, value in body.model_dump(exclude_unset=True).items():
            setattr(subject, name, value)
        subject.version += 1
    return JSONBytesResponse(subject_out(subject))


@router.delete("/subjects/{subject_id}", status_code=204, responses=error_responses(403, 412))
@precondition(get_subject)
async def delete_subject(
    subject_id: IdPath, principal: WriterDep, services: ServicesDep
) -> Response:
    async with services.db.writer() as session:
        subject = await load_subject(session, principal, subject_id)
        await session.delete(subject)
    return Response(status_code=204)
