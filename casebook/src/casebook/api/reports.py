"""Case reports: ``POST /cases/{id}/reports`` enqueues the PDF job in the same transaction
as the ``reports`` row (both exist or neither does); the status and the file follow."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from sqlalchemy import select

from casebook.api.cases import load_case
from casebook.api.deps import PrincipalDep, ServicesDep, WriterDep
from casebook.auth import Principal
from casebook.models import Report, ReportStatus
from casebook.responses import ReportList, ReportOut
from casebook.schemas import IdPath
from casebook.services import Services
from casebook.tasks import generate_report
from lockstep import (
    ConflictError,
    JobInfo,
    JobNotFoundError,
    JSONBytesResponse,
    NotFoundError,
    error_responses,
    file_response,
    openapi_links,
)

router = APIRouter(tags=["reports"])


def report_out(report: Report, job: JobInfo | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": report.id,
        "case_id": report.case_id,
        "kind": report.kind,
        "status": report.status.value,
        "job_id": report.job_id,
        "created_at": report.created_at,
        "finished_at": report.finished_at,
        "file_url": f"/api/v1/reports/{report.id}/file"
        if report.status is ReportStatus.READY
        else None,
    }
    if job is not None:
        out["job"] = {
            "state": job.state.value,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "progress": job.progress,
            "error": job.error,
        }
    return out


async def _load(services: Services, principal: Principal, report_id: int) -> Report:
    async with services.db.reader() as session:
        report = await session.get(Report, report_id)
    if report is None or report.organization_id != principal.organization_id:
        raise NotFoundError(f"report {report_id} not found")
    return report


@router.post(
    "/cases/{case_id}/reports",
    status_code=202,
    response_model=ReportOut,
    responses={
        202: {"description": "Accepted", "links": openapi_links("report_id", "get_report")},
        **error_responses(403),
    },
)
async def request_report(
    case_id: IdPath, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    """Start rendering a case report; poll ``GET /reports/{id}`` until it is ``ready``."""
    async with services.db.writer() as session:
        await load_case(session, principal, case_id)
        report = Report(
            organization_id=principal.organization_id,
            case_id=case_id,
            created_by_id=principal.user_id,
        )
        session.add(report)
        await session.flush()
        report.job_id = await services.jobs.enqueue(
            generate_report,
            {"report_id": report.id},
            session=session,
            tenant=str(principal.organization_id),
        )
    return JSONBytesResponse(
        report_out(report),
        status_code=202,
        headers={"Location": f"/api/v1/reports/{report.id}"},
    )


@router.get("/cases/{case_id}/reports", response_model=ReportList)
async def list_reports(
    case_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    """The case's reports, newest first (the last 100); ``GET /reports/{id}`` adds the job.
    A case of another organization is a 404, like one that does not exist."""
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        reports = (
            await session.scalars(
                select(Report)
                .where(
                    Report.organization_id == principal.organization_id,
                    Report.case_id == case_id,
                )
                .order_by(Report.id.desc())
                .limit(100)
            )
        ).all()
    return JSONBytesResponse({"items": [report_out(r) for r in reports]})


@router.get("/reports/{report_id}", response_model=ReportOut)
async def get_report(
    report_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    """The report and, while it is kept, its job (state, attempt, progress, last error)."""
    report = await _load(services, principal, report_id)
    job = None
    if report.job_id is not None:
        try:
            job = await services.jobs.get(report.job_id)
        except JobNotFoundError:
            job = None  # pruned after its retention period
    return JSONBytesResponse(report_out(report, job))


@router.get(
    "/reports/{report_id}/file",
    response_model=None,
    responses={**file_response("application/pdf", "The report"), **error_responses(409)},
)
async def report_file(
    report_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> FileResponse:
    """The PDF once the report is ready; 409 while it is pending, 404 for a failed one."""
    report = await _load(services, principal, report_id)
    if report.status is ReportStatus.PENDING:
        raise ConflictError(f"report {report_id} is still being generated")
    path = Path(report.file_path)
    if report.status is not ReportStatus.READY or not await asyncio.to_thread(path.is_file):
        raise NotFoundError(f"report {report_id} has no file")
    return FileResponse(
        path, media_type="application/pdf", filename=f"case-{report.case_id}-report-{report.id}.pdf"
    )
