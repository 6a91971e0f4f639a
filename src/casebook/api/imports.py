"""CSV imports of transactions into a case: upload (streamed), status, rejects report.

``POST /cases/{id}/imports`` (multipart, field ``file``; ``?policy=skip_invalid`` to keep
the valid rows of a file with bad ones) runs the import in this process and answers when it
is done: 201 with the import when its rows are stored; 422 (nothing stored) with the import
id and the first rejects when rows were refused, the full report at
``/imports/{id}/rejects``; 409 when the same file was already imported into the case.
While it runs, ``GET /imports/{id}`` shows its progress.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from casebook.api.cases import load_case
from casebook.api.deps import PrincipalDep, ServicesDep, WriterDep
from casebook.imports import ImportSummary, import_transactions
from casebook.models import ImportRecord, ImportReject
from casebook.uploads import receive_file
from lockstep import (
    ImportPolicy,
    ImportProgress,
    JSONBytesResponse,
    NotFoundError,
    ValidationFailedError,
)

router = APIRouter(tags=["imports"])

REJECTS_SHOWN = 20


def _board(request: Request) -> dict[int, ImportProgress]:
    """Progress of the imports running in this process (until the jobs system reports it)."""
    board: dict[int, ImportProgress] | None = getattr(request.app.state, "import_progress", None)
    if board is None:
        board = request.app.state.import_progress = {}
    return board


def record_out(record: ImportRecord, progress: ImportProgress | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": record.id,
        "case_id": record.case_id,
        "filename": record.filename,
        "sha256": record.content_sha256,
        "status": record.status.value,
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
        "rejects_url": f"/api/v1/imports/{record.id}/rejects" if record.rows_rejected else None,
    }
    if progress is not None:
        out["progress"] = {
            "bytes_read": progress.bytes_read,
            "bytes_total": progress.bytes_total,
            "rows_read": progress.rows_read,
            "rows_written": progress.rows_written,
            "rows_rejected": progress.rows_rejected,
        }
    return out


@router.post("/cases/{case_id}/imports", status_code=201)
async def upload(
    case_id: int,
    request: Request,
    principal: WriterDep,
    services: ServicesDep,
    policy: ImportPolicy = ImportPolicy.ALL_OR_NOTHING,
) -> JSONBytesResponse:
    """Import a CSV file of transactions into the case (see the module documentation)."""
    async with services.db.reader() as session:  # 404 before a byte of the upload is read
        await load_case(session, principal, case_id)
    settings = services.settings
    filename, spool = await receive_file(
        request,
        field="file",
        max_bytes=settings.import_max_bytes,
        directory=settings.data_dir / "uploads",
    )
    board = _board(request)
    summary: ImportSummary | None = None
    try:
        summary = await import_transactions(
            services.db,
            organization_id=principal.organization_id,
            case_id=case_id,
            spool=spool,
            filename=filename,
            policy=policy,
            created_by_id=principal.user_id,
            on_progress=lambda import_id, p: board.__setitem__(import_id, p),
        )
    finally:
        spool.discard()
        if summary is not None:
            board.pop(summary.id, None)
    record = await _load(services, principal.organization_id, summary.id)
    if summary.outcome is not None and not summary.outcome.committed:
        raise ValidationFailedError(
            summary.message,
            details={
                "import_id": summary.id,
                "rows_rejected": summary.outcome.rows_rejected,
                "rejects_url": f"/api/v1/imports/{summary.id}/rejects",
                "rejects": [
                    {"row": r.row, "column": r.column, "reason": r.reason, "value": r.value}
                    for r in summary.outcome.rejects[:REJECTS_SHOWN]
                ],
            },
        )
    return JSONBytesResponse(
        record_out(record), status_code=201, headers={"Location": f"/api/v1/imports/{record.id}"}
    )


async def _load(services: ServicesDep, organization_id: int, import_id: int) -> ImportRecord:
    async with services.db.reader() as session:
        record = await session.scalar(
            select(ImportRecord).where(
                ImportRecord.id == import_id, ImportRecord.organization_id == organization_id
            )
        )
    if record is None:
        raise NotFoundError(f"import {import_id} not found")
    return record


@router.get("/cases/{case_id}/imports")
async def list_imports(
    case_id: int, request: Request, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    """The case's imports, newest first (the last 100)."""
    async with services.db.reader() as session:
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
    board = _board(request)
    return JSONBytesResponse({"items": [record_out(r, board.get(r.id)) for r in records]})


@router.get("/imports/{import_id}")
async def get_import(
    import_id: int, request: Request, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    record = await _load(services, principal.organization_id, import_id)
    return JSONBytesResponse(record_out(record, _board(request).get(import_id)))


@router.get("/imports/{import_id}/rejects")
async def download_rejects(
    import_id: int, principal: PrincipalDep, services: ServicesDep
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
                out.writerow(
                    [reject.row_number, reject.column, reject.reason, _inert(reject.value)]
                )
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


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _inert(value: str) -> str:
    """A cell a spreadsheet will not evaluate: the rejected values are whatever the uploaded
    file held, and ``=HYPERLINK(...)`` must come back as text (CSV injection)."""
    if value.startswith(_FORMULA) and not _is_number(value):
        return "'" + value
    return value


def _is_number(value: str) -> bool:
    try:
        float(value.replace(",", "."))
    except ValueError:
        return False
    return True
