"""Statement imports into a case: preview, upload (streamed), a job per import, status,
findings, rejects report.

``POST /cases/{id}/imports/preview`` (multipart, field ``file``) reads the file and answers
what it would do: format, mapping, questions, warnings, preamble, trailer, first rows.
``POST /cases/{id}/imports`` (multipart, field ``file``; ``?policy=skip_invalid`` keeps the
valid rows of a file with bad ones; ``?map=role=column`` or ``?map=date_order=dmy`` (any
number) answer the preview's questions or correct its mapping; ``?profile=NAME`` reads it
with a saved profile; ``?save_profile=NAME`` saves the mapping used) surveys the file
(``422`` with the questions when some are left), stores the upload and queues its job in
one transaction, then answers ``202`` with the import (``queued``) and its ``Location``; poll
``GET /imports/{id}`` for the job's progress (bytes read) and the outcome. With
``Prefer: wait=N`` (seconds, at most 60) the answer waits for the job that long: when the
import settles in time it is ``201`` with the import (rows stored), ``422`` with the first
rejects (nothing stored; the full report at ``/imports/{id}/rejects``) or the reason the
file could not be read, ``409`` when the same file was imported meanwhile; otherwise
``202`` as above. A file already imported into the case, or still queued, is ``409`` at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints
from sqlalchemy import select

from casebook.api.cases import load_case
from casebook.api.deps import PrincipalDep, ServicesDep, WriterDep
from casebook.imports import (
    LIVE,
    ImportRequest,
    claimed_by,
    duplicate_error,
    plan_request,
    queue_import,
    settle_abandoned,
    spool_path,
    uploads_dir,
)
from casebook.models import ImportRecord, ImportReject, ImportStatus
from casebook.responses import ImportList, ImportOut
from casebook.schemas import IdPath, NameQuery
from casebook.services import Services
from casebook.spreadsheet import inert
from casebook.statements import parse_answers, plan
from casebook.tasks import run_import
from casebook.uploads import receive_file
from lockstep import (
    ImportPolicy,
    JobFailedError,
    JobInfo,
    JobNotFoundError,
    JSONBytesResponse,
    NotFoundError,
    ResultUnavailableError,
    ValidationFailedError,
    error_responses,
    file_response,
    openapi_links,
)
from lockstep.imports.mapping import ANSWER_PATTERN

router = APIRouter(tags=["imports"])

REJECTS_SHOWN = 20
MAX_WAIT_SECONDS = 60.0


def status_of(record: ImportRecord, job: JobInfo | None) -> str:
    """The import's status; ``failed`` also when its job ended without settling it (it was
    cancelled, or its last attempt died)."""
    if record.status in LIVE and job is not None and job.state.is_final:
        return ImportStatus.FAILED.value
    return record.status.value


def record_out(record: ImportRecord, job: JobInfo | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": record.id,
        "case_id": record.case_id,
        "filename": record.filename,
        "sha256": record.content_sha256,
        "status": status_of(record, job),
        "policy": record.policy,
        "size_bytes": record.size_bytes,
        "encoding": record.encoding,
        "delimiter": record.delimiter,
        "rows_read": record.rows_read,
        "rows_imported": record.rows_imported,
        "rows_rejected": record.rows_rejected,
        "message": record.message,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "job_id": record.job_id,
        "rejects_url": f"/api/v1/imports/{record.id}/rejects" if record.rows_rejected else None,
        "format": record.format,
        "account": record.account,
        "mapping": json.loads(record.mapping) if record.mapping else None,
        "findings": json.loads(record.findings) if record.findings else None,
    }
    if job is not None:
        out["job"] = {
            "state": job.state.value,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "progress": job.progress,  # current/total: bytes of the file read so far
            "error": job.error,
        }
        if out["status"] == ImportStatus.FAILED.value and not record.message:
            out["message"] = f"its job ended {job.state.value}" + (
                f": {job.error}" if job.error else ""
            )
    return out


def wait_preference(request: Request) -> float:
    """Seconds the client asks us to wait for the outcome (``Prefer: wait=N``, RFC 7240),
    at most :data:`MAX_WAIT_SECONDS`; 0 without it or with ``respond-async``."""
    wait = 0.0
    for header in request.headers.getlist("prefer"):
        for preference in header.split(","):
            name, _, value = preference.strip().partition("=")
            if name.strip().lower() == "respond-async":
                return 0.0
            if name.strip().lower() == "wait":
                with contextlib.suppress(ValueError):
                    wait = max(0.0, min(float(value.strip().strip('"')), MAX_WAIT_SECONDS))
    return wait


MapQuery = Annotated[
    list[Annotated[str, StringConstraints(max_length=200, pattern=ANSWER_PATTERN)]],
    Query(
        alias="map",
        description="role=column or setting=value (date_order, decimal, sign, currency, "
        "account), answering the preview's questions or correcting its mapping",
    ),
]


# The upload is read as a stream (never parsed by FastAPI), so its body is declared here.
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        }
    },
}
IMPORT_LINKS = openapi_links("import_id", "get_import", "download_rejects")


@router.post(
    "/cases/{case_id}/imports/preview",
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={
        200: {
            "description": "What importing the file would do (nothing is stored)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **error_responses(403),
    },
)
async def preview(
    case_id: IdPath,
    request: Request,
    principal: WriterDep,
    services: ServicesDep,
    answers: MapQuery = [],  # noqa: B006 - FastAPI copies the default
    profile: NameQuery = None,
) -> JSONBytesResponse:
    """What importing the uploaded file would do, without importing it: its format, the
    detected mapping (and the profile that answered it), the questions left, warnings,
    preamble, trailer and first rows as they would be stored."""
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
    wanted = parse_answers(answers)
    settings = services.settings
    filename, spool = await receive_file(
        request,
        field="file",
        max_bytes=settings.import_max_bytes,
        directory=uploads_dir(settings.data_dir),
    )
    try:
        async with services.db.reader() as session:
            found = await plan(
                session, principal.organization_id, spool, answers=wanted, profile=profile,
                full=True,
            )  # fmt: skip
    finally:
        spool.discard()
    return JSONBytesResponse({"filename": filename, **found.as_dict()})


@router.post(
    "/cases/{case_id}/imports",
    status_code=202,
    response_model=ImportOut,
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={
        201: {"description": "Imported (with Prefer: wait)", "model": ImportOut},
        202: {"description": "Queued", "links": IMPORT_LINKS},
        **error_responses(403, 409),
    },
)
async def upload(
    case_id: IdPath,
    request: Request,
    principal: WriterDep,
    services: ServicesDep,
    policy: ImportPolicy = ImportPolicy.ALL_OR_NOTHING,
    answers: MapQuery = [],  # noqa: B006 - FastAPI copies the default
    profile: NameQuery = None,
    save_profile: NameQuery = None,
) -> JSONBytesResponse:
    """Upload a bank statement (CSV, OFX/QFX, camt.053, MT940, QIF) to import into the case
    (see the module docs)."""
    async with services.db.reader() as session:  # 404 before a byte of the upload is read
        await load_case(session, principal, case_id)
    wanted = parse_answers(answers)
    settings = services.settings
    filename, spool = await receive_file(
        request,
        field="file",
        max_bytes=settings.import_max_bytes,
        directory=uploads_dir(settings.data_dir),
    )
    org = principal.organization_id
    # A copy of this file whose job was cancelled (or died) no longer blocks this upload.
    await settle_abandoned(
        services.db,
        services.jobs,
        ImportRecord.case_id == case_id,
        ImportRecord.content_sha256 == spool.sha256,
    )
    queued: int | None = None
    try:
        asked = ImportRequest(
            org, case_id, spool, filename, policy, principal.user_id,
            answers=wanted, profile=profile, save_profile=save_profile,
        )  # fmt: skip
        planned = await plan_request(services.db, asked)
        async with services.db.writer() as session:
            record = await queue_import(session, settings.data_dir, asked, planned)
            queued = record.id
            record.job_id = await services.jobs.enqueue(
                run_import,
                {"import_id": record.id, "organization_id": org},
                session=session,
                tenant=str(org),
            )
    except BaseException:
        spool.discard()
        if queued is not None:  # moved to its queued place, but the transaction failed
            spool_path(settings.data_dir, queued).unlink(missing_ok=True)
        raise
    assert record.job_id is not None
    wait = wait_preference(request)
    if wait:
        with contextlib.suppress(TimeoutError, JobFailedError, ResultUnavailableError):
            async with asyncio.timeout(wait):
                await services.jobs.result(record.job_id)
    record, job = await _load_with_job(services, org, record.id)
    location = {"Location": f"/api/v1/imports/{record.id}"}
    status = status_of(record, job)
    if status == ImportStatus.IMPORTED.value:
        return JSONBytesResponse(record_out(record, job), status_code=201, headers=location)
    if status == ImportStatus.REJECTED.value:
        raise await _rejected(services, record)
    if status == ImportStatus.FAILED.value:
        async with services.db.reader() as session:
            claimed = await claimed_by(session, case_id, record.content_sha256)
        if claimed is not None:  # another upload of the same file got there first
            raise duplicate_error(claimed)
        raise ValidationFailedError(
            f"the file could not be imported: {record_out(record, job)['message']}",
            details={"import_id": record.id},
        )
    return JSONBytesResponse(record_out(record, job), status_code=202, headers=location)


async def _rejected(services: Services, record: ImportRecord) -> ValidationFailedError:
    async with services.db.reader() as session:
        rejects = (
            await session.scalars(
                select(ImportReject)
                .where(ImportReject.import_id == record.id)
                .order_by(ImportReject.id)
                .limit(REJECTS_SHOWN)
            )
        ).all()
    return ValidationFailedError(
        f"{record.rows_rejected} of {record.rows_read} rows were rejected; nothing was imported "
        "(policy all_or_nothing). Fix them and upload the file again.",
        details={
            "import_id": record.id,
            "rows_rejected": record.rows_rejected,
            "rejects_url": f"/api/v1/imports/{record.id}/rejects",
            "rejects": [
                {"row": r.row_number, "column": r.column, "reason": r.reason, "value": r.value}
                for r in rejects
            ],
        },
    )


async def _load(services: Services, organization_id: int, import_id: int) -> ImportRecord:
    async with services.db.reader() as session:
        record = await session.scalar(
            select(ImportRecord).where(
                ImportRecord.id == import_id, ImportRecord.organization_id == organization_id
            )
        )
    if record is None:
        raise NotFoundError(f"import {import_id} not found")
    return record


async def _load_with_job(
    services: Services, organization_id: int, import_id: int
) -> tuple[ImportRecord, JobInfo | None]:
    record = await _load(services, organization_id, import_id)
    job = None
    if record.job_id is not None:
        with contextlib.suppress(JobNotFoundError):  # pruned after its retention period
            job = await services.jobs.get(record.job_id)
        if job is not None and job.state.is_final and record.status in LIVE:
            # The job may have settled the record after we read it: read it again, now that
            # the job's end (written after the import's commit) is known.
            record = await _load(services, organization_id, import_id)
    return record, job


@router.get("/cases/{case_id}/imports", response_model=ImportList)
async def list_imports(
    case_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    """The case's imports, newest first (the last 100); ``GET /imports/{id}`` adds the job.
    A case of another organization is a 404, like one that does not exist."""
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        records = (
            await session.scalars(
                select(ImportRecord)
                .where(
                    ImportRecord.organization_id == principal.organization_id,
                    ImportRecord.case_id == case_id,
                )
                .order_by(ImportRecord.id.desc())
                .limit(100)
            )
        ).all()
    return JSONBytesResponse({"items": [record_out(r) for r in records]})


@router.get("/imports/{import_id}", response_model=ImportOut)
async def get_import(
    import_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    """The import and, while it is kept, its job (state, attempt, progress, last error)."""
    record, job = await _load_with_job(services, principal.organization_id, import_id)
    return JSONBytesResponse(record_out(record, job))


@router.get(
    "/imports/{import_id}/rejects",
    response_model=None,
    responses=file_response("text/csv", "The rejects report: row, column, reason, value"),
)
async def download_rejects(
    import_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> StreamingResponse:
    """The rejects report as CSV: row (line in the file), column, reason, value."""
    record = await _load(services, principal.organization_id, import_id)

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(["row", "column", "reason", "value"])
        last = 0
        while True:
            async with services.db.reader() as session:
                batch = (
                    await session.scalars(
                        select(ImportReject)
                        .where(ImportReject.import_id == import_id, ImportReject.id > last)
                        .order_by(ImportReject.id)
                        .limit(5_000)
                    )
                ).all()
            for reject in batch:
                out.writerow([reject.row_number, reject.column, reject.reason, inert(reject.value)])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(batch) < 5_000:
                return
            last = batch[-1].id

    name = f"import-{record.id}-rejects.csv"
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
