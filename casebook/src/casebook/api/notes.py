"""Notes on a case: analysts and admins write them, everyone of the organization reads them.

A note is edited by its author only (``If-Match`` honoured: a stale ETag is a 412) and
deleted by its author or an admin. A note of another organization answers 404, exactly
like one that does not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from casebook.api.cases import load_case
from casebook.api.deps import (
    DEFAULT_PAGE,
    LimitQuery,
    PrincipalDep,
    ServicesDep,
    WriterDep,
    members_of,
    organization_of,
)
from casebook.auth import Principal
from casebook.evidence import load_note, note_out, users_of
from casebook.models import Note, Role, utcnow
from casebook.pagination import by_id, page
from casebook.responses import NoteOut, NotePage
from casebook.schemas import CursorQuery, IdPath, NoteCreate, NoteUpdate
from lockstep import (
    Dependency,
    JSONBytesResponse,
    PermissionDeniedError,
    Row,
    Scope,
    cached,
    error_responses,
    openapi_links,
    precondition,
)

router = APIRouter(tags=["notes"])
NOTE_LINKS = openapi_links("note_id", "get_note", "update_note", "delete_note")


def case_notes_dependencies(case_id: int, principal: Principal) -> list[Dependency]:
    return [Row("cases", case_id), Scope("notes", case_id=case_id), members_of(principal)]


@router.get("/cases/{case_id}/notes", response_model=NotePage)
@cached(name="case_notes", depends=case_notes_dependencies, vary=organization_of)
async def list_case_notes(
    case_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """The case's notes, newest first, ``limit`` at a time."""
    stmt = select(Note).where(
        Note.organization_id == principal.organization_id, Note.case_id == case_id
    )
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        notes, next_cursor = await by_id(session, stmt, Note.id, cursor, limit, "newest")
        users = await users_of(session, {n.author_id for n in notes})
    return JSONBytesResponse(page([note_out(n, users) for n in notes], next_cursor))


@router.post(
    "/cases/{case_id}/notes",
    status_code=201,
    response_model=NoteOut,
    responses={201: {"description": "Created", "links": NOTE_LINKS}, **error_responses(403)},
)
async def create_note(
    case_id: IdPath, body: NoteCreate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    """Add a note to the case (analysts and admins); you are its author."""
    at = utcnow()
    async with services.db.writer() as session:
        await load_case(session, principal, case_id)
        note = Note(
            organization_id=principal.organization_id,
            case_id=case_id,
            author_id=principal.user_id,
            body=body.body,
            created_at=at,
            updated_at=at,
        )
        session.add(note)
        await session.flush()
        out = note_out(note, await users_of(session, {note.author_id}))
    return JSONBytesResponse(out, status_code=201, headers={"Location": f"/api/v1/notes/{note.id}"})


def note_dependencies(note_id: int, principal: Principal) -> list[Dependency]:
    return [Row("notes", note_id), members_of(principal)]


@router.get("/notes/{note_id}", response_model=NoteOut)
@cached(name="note", depends=note_dependencies, vary=organization_of)
async def get_note(
    note_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.reader() as session:
        note = await load_note(session, principal, note_id)
        out = note_out(note, await users_of(session, {note.author_id}))
    return JSONBytesResponse(out)


@router.patch("/notes/{note_id}", response_model=NoteOut, responses=error_responses(403, 412))
@precondition(get_note)
async def update_note(
    note_id: IdPath, body: NoteUpdate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    """Edit your own note (``If-Match``: its ETag; 412 when it changed since); 403 for
    another's."""
    async with services.db.writer() as session:
        note = await load_note(session, principal, note_id)
        if note.author_id != principal.user_id:
            raise PermissionDeniedError("only a note's author may edit it")
        if body.body is not None:
            note.body = body.body
        note.updated_at = utcnow()
        note.version += 1
        await session.flush()
        out = note_out(note, await users_of(session, {note.author_id}))
    return JSONBytesResponse(out)


@router.delete("/notes/{note_id}", status_code=204, responses=error_responses(403, 412))
@precondition(get_note)
async def delete_note(note_id: IdPath, principal: WriterDep, services: ServicesDep) -> Response:
    """Delete a note: its author or an admin; 403 for anyone else."""
    async with services.db.writer() as session:
        note = await load_note(session, principal, note_id)
        if note.author_id != principal.user_id and principal.role is not Role.ADMIN:
            raise PermissionDeniedError("only a note's author or an admin may delete it")
        await session.delete(note)
    return Response(status_code=204)
