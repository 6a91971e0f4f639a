"""Evidence files of a case and their chain of custody (rules in :mod:`casebook.evidence`).

``POST /cases/{id}/evidence`` (analysts and admins; multipart: ``file``, optional
``description``) streams the file to the data directory, hashing it on the way (413 past
``LOCKSTEP_EVIDENCE_MAX_BYTES``). ``GET /evidence/{id}/content`` serves it as an attachment
(``ETag``: its SHA-256; ``If-None-Match`` → 304) after hashing it again: a file that no longer
matches is refused (409) and the mismatch recorded. ``POST /evidence/{id}/verify`` hashes
it and records the outcome; ``GET /evidence/{id}/custody`` is its history. ``DELETE``
(admins) leaves a tombstone. Another organization's item answers 404 like a missing one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import select

from casebook import evidence
from casebook.api.cases import load_case
from casebook.api.deps import (
    DEFAULT_PAGE,
    AdminDep,
    LimitQuery,
    PrincipalDep,
    ServicesDep,
    WriterDep,
    members_of,
    organization_of,
)
from casebook.auth import Principal
from casebook.evidence import custody_out, evidence_out, load_evidence, users_of
from casebook.models import CustodyEvent, Evidence
from casebook.pagination import by_id, page
from casebook.responses import CustodyPage, EvidenceOut, EvidencePage
from casebook.schemas import NO_NUL, CursorQuery, IdPath
from casebook.uploads import receive_upload
from lockstep import (
    ConflictError,
    Dependency,
    JSONBytesResponse,
    Row,
    Scope,
    ValidationFailedError,
    acting_as,
    cached,
    error_responses,
    openapi_links,
    precondition,
)

router = APIRouter(tags=["evidence"])

MAX_DESCRIPTION = 500
EVIDENCE_LINKS = openapi_links(
    "evidence_id",
    "get_evidence",
    "download_evidence",
    "verify_evidence",
    "list_custody",
    "delete_evidence",
)
# The upload is read as a stream (never parsed by FastAPI), so its body is declared here.
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "description": {
                        "type": "string",
                        "maxLength": MAX_DESCRIPTION,
                        "pattern": NO_NUL,
                    },
                },
            }
        }
    },
}
CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, as an attachment (ETag: its SHA-256)",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    },
}


def _actor(principal: Principal) -> str:
    return f"user:{principal.user_id}"


async def _out(services: ServicesDep, item: Evidence) -> dict[str, object]:
    async with services.db.reader() as session:
        users = await users_of(session, {item.uploaded_by_id})
    return evidence_out(item, users)


@router.post(
    "/cases/{case_id}/evidence",
    status_code=201,
    response_model=EvidenceOut,
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={201: {"description": "Stored", "links": EVIDENCE_LINKS}, **error_responses(403)},
)
async def upload_evidence(
    case_id: IdPath, request: Request, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    """Attach a file to the case (analysts and admins): streamed to the data directory,
    its SHA-256 and size computed on the way; 413 past the size limit."""
    async with services.db.reader() as session:  # 404 before a byte of the upload is read
        await load_case(session, principal, case_id)
    data_dir = services.settings.data_dir
    upload = await receive_upload(
        request,
        field="file",
        max_bytes=services.settings.evidence_max_bytes,
        directory=evidence.incoming_dir(data_dir),
        text_fields=("description",),
    )
    spool = upload.spool
    placed: Path | None = None
    try:
        description = upload.fields.get("description", "")
        if len(description) > MAX_DESCRIPTION or "\x00" in description:
            raise ValidationFailedError(
                f"the description holds at most {MAX_DESCRIPTION} characters, and no NUL",
                details=[
                    {
                        "loc": ["description"],
                        "msg": f"at most {MAX_DESCRIPTION} characters, no NUL",
                        "type": "string_too_long",
                    }
                ],
            )
        item = Evidence(
            organization_id=principal.organization_id,
            case_id=case_id,
            sha256=spool.sha256,
            size_bytes=spool.size,
            filename=evidence.display_name(upload.filename),
            content_type=evidence.media_type(upload.content_type),
            description=description,
            uploaded_by_id=principal.user_id,
            created_at=evidence.now(),
            version=1,
        )
        async with services.db.writer() as session:
            await load_case(session, principal, case_id)  # still there, in this transaction
            session.add(item)
            await session.flush()
            target = evidence.stored_path(data_dir, item)
            if await asyncio.to_thread(evidence.place, spool, target):
                placed = target
            evidence.record(
                session,
                item,
                evidence.UPLOADED,
                actor=_actor(principal),
                user_id=principal.user_id,
                sha256=item.sha256,
            )
    except BaseException:
        spool.discard()
        if placed is not None:  # a file of ours, but its row never committed
            placed.unlink(missing_ok=True)
        raise
    return JSONBytesResponse(
        await _out(services, item),
        status_code=201,
        headers={"Location": f"/api/v1/evidence/{item.id}"},
    )


def case_evidence_dependencies(case_id: int, principal: Principal) -> list[Dependency]:
    return [Row("cases", case_id), Scope("evidence", case_id=case_id), members_of(principal)]


@router.get("/cases/{case_id}/evidence", response_model=EvidencePage)
@cached(name="case_evidence", depends=case_evidence_dependencies, vary=organization_of)
async def list_case_evidence(
    case_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """The case's evidence, newest first, deleted items (tombstones) included."""
    stmt = select(Evidence).where(
        Evidence.organization_id == principal.organization_id, Evidence.case_id == case_id
    )
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        items, next_cursor = await by_id(session, stmt, Evidence.id, cursor, limit, "newest")
        users = await users_of(session, {i.uploaded_by_id for i in items})
    return JSONBytesResponse(page([evidence_out(i, users) for i in items], next_cursor))


def evidence_dependencies(evidence_id: int, principal: Principal) -> list[Dependency]:
    return [Row("evidence", evidence_id), members_of(principal)]


@router.get("/evidence/{evidence_id}", response_model=EvidenceOut)
@cached(name="evidence", depends=evidence_dependencies, vary=organization_of)
async def get_evidence(
    evidence_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    """The item's metadata (a deleted item's too)."""
    async with services.db.reader() as session:
        item = await load_evidence(session, principal, evidence_id)
        users = await users_of(session, {item.uploaded_by_id})
    return JSONBytesResponse(evidence_out(item, users))


def _etag(item: Evidence) -> str:
    return f'"{item.sha256}"'


def _matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


@router.get(
    "/evidence/{evidence_id}/content",
    response_model=None,
    responses={**CONTENT, **error_responses(409)},
)
async def download_evidence(
    evidence_id: IdPath, request: Request, principal: PrincipalDep, services: ServicesDep
) -> Response:
    """The file as an attachment (``X-Content-Type-Options: nosniff``), once it hashed
    again to its SHA-256; recorded as ``downloaded`` in its custody. 409 when it was
    deleted, or when the stored file no longer matches (recorded as a failed verification).
    ``If-None-Match`` with its ETag (the SHA-256) is a 304 and records nothing."""
    data_dir = services.settings.data_dir
    async with services.db.reader() as session:
        item = await load_evidence(session, principal, evidence_id)
    evidence.must_exist(item)
    etag = _etag(item)
    if _matches(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    seen = await evidence.rehash(data_dir, item)
    # A GET that writes (custody): audited as the caller's, like any other write.
    with acting_as(_actor(principal)):
        async with services.db.writer() as session:
            item = await load_evidence(session, principal, evidence_id)
            if seen != item.sha256:
                evidence.record_verification(
                    session, item, seen, actor=_actor(principal), user_id=principal.user_id
                )
            else:
                evidence.record(
                    session,
                    item,
                    evidence.DOWNLOADED,
                    actor=_actor(principal),
                    user_id=principal.user_id,
                    sha256=seen,
                )
    if seen != item.sha256:
        raise ConflictError(
            f"evidence {evidence_id}'s stored file "
            + ("is missing" if seen is None else "no longer matches its SHA-256")
            + "; it is not served (the failed check is in its custody history)",
            details={"expected": item.sha256, "seen": seen},
        )
    return FileResponse(
        evidence.stored_path(data_dir, item),
        media_type=item.content_type,
        headers={
            "ETag": etag,
            "Content-Disposition": evidence.content_disposition(item.filename),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-cache",
        },
    )


@router.post(
    "/evidence/{evidence_id}/verify",
    response_model=EvidenceOut,
    responses=error_responses(409),
)
async def verify_evidence(
    evidence_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    """Hash the stored file again and record the outcome (``verify_status``: ok, mismatch,
    missing) on the item and in its custody; anyone of the organization may. 409 for a
    deleted item."""
    data_dir = services.settings.data_dir
    async with services.db.reader() as session:
        item = await load_evidence(session, principal, evidence_id)
    evidence.must_exist(item)
    seen = await evidence.rehash(data_dir, item)
    async with services.db.writer() as session:
        item = await load_evidence(session, principal, evidence_id)
        evidence.record_verification(
            session, item, seen, actor=_actor(principal), user_id=principal.user_id
        )
        await session.flush()
    return JSONBytesResponse(await _out(services, item))


def custody_dependencies(evidence_id: int, principal: Principal) -> list[Dependency]:
    return [
        Row("evidence", evidence_id),
        Scope("evidence_custody", evidence_id=evidence_id),
        members_of(principal),
    ]


@router.get("/evidence/{evidence_id}/custody", response_model=CustodyPage)
@cached(name="evidence_custody", depends=custody_dependencies, vary=organization_of)
async def list_custody(
    evidence_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """The item's chain of custody, oldest first: every upload, download, verification
    and deletion, by whom, when, and the hash seen."""
    stmt = select(CustodyEvent).where(CustodyEvent.evidence_id == evidence_id)
    async with services.db.reader() as session:
        await load_evidence(session, principal, evidence_id)
        events, next_cursor = await by_id(session, stmt, CustodyEvent.id, cursor, limit, "oldest")
        users = await users_of(session, {e.user_id for e in events})
    return JSONBytesResponse(page([custody_out(e, users) for e in events], next_cursor))


@router.delete("/evidence/{evidence_id}", status_code=204, responses=error_responses(403, 409, 412))
@precondition(get_evidence)
async def delete_evidence(
    evidence_id: IdPath, principal: AdminDep, services: ServicesDep
) -> Response:
    """Delete the file (admins): the item stays as a tombstone with its custody history,
    which records the deletion. 409 when it is deleted already."""
    async with services.db.writer() as session:
        item = await load_evidence(session, principal, evidence_id)
        evidence.must_exist(item)
        item.deleted_at = evidence.now()
        item.deleted_by_id = principal.user_id
        item.version += 1
        evidence.record(
            session,
            item,
            evidence.DELETED,
            actor=_actor(principal),
            user_id=principal.user_id,
            sha256=item.sha256,
        )
        keep = await evidence.still_used(session, item)
    if not keep:
        await asyncio.to_thread(evidence.stored_path(services.settings.data_dir, item).unlink, True)
    return Response(status_code=204)
