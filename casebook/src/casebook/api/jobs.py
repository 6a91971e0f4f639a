"""``/api/v1/jobs``: admins list, inspect, retry and cancel their organization's jobs.

Jobs are tagged with the organization that caused them (the job's tenant); a job of another
organization answers 404 like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from casebook.api.deps import DEFAULT_PAGE, AdminDep, LimitQuery, ServicesDep
from casebook.responses import JobDetail, JobOut, JobPage, QueueStatsList
from casebook.schemas import NO_NUL, JobIdPath, JobIdQuery
from lockstep import JobInfo, JobState, JSONBytesResponse, error_responses

NameQuery = Annotated[str | None, Query(max_length=100, pattern=NO_NUL)]

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=error_responses(403))


def job_out(job: JobInfo) -> dict[str, Any]:
    out = job.to_json()
    out.pop("traceback")  # on the detail view only
    return out


@router.get("", response_model=JobPage)
async def list_jobs(
    principal: AdminDep,
    services: ServicesDep,
    state: Annotated[list[JobState] | None, Query(max_length=20)] = None,
    queue: NameQuery = None,
    task: NameQuery = None,
    before: JobIdQuery = None,
    limit: LimitQuery = DEFAULT_PAGE,
) -> JSONBytesResponse:
    """Newest first; pass the last ``id`` as ``before`` for the next page."""
    jobs = await services.jobs.list_jobs(
        states=state,
        queue=queue,
        task=task,
        tenant=str(principal.organization_id),
        before_id=before,
        limit=limit,
    )
    items = [job_out(job) for job in jobs]
    return JSONBytesResponse(
        {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}
    )


@router.get("/queues", response_model=QueueStatsList)
async def queue_stats(principal: AdminDep, services: ServicesDep) -> JSONBytesResponse:
    """Depth, running and oldest waiting job per queue (all organizations: counts only)."""
    return JSONBytesResponse({"items": [s.to_json() for s in await services.jobs.stats()]})


@router.get("/{job_id}", response_model=JobDetail)
async def get_job(
    job_id: JobIdPath, principal: AdminDep, services: ServicesDep
) -> JSONBytesResponse:
    """One job with its error history and last traceback."""
    job = await services.jobs.get(job_id, tenant=str(principal.organization_id))
    return JSONBytesResponse(job.to_json())


@router.post("/{job_id}/retry", response_model=JobOut, responses=error_responses(409))
async def retry_job(
    job_id: JobIdPath, principal: AdminDep, services: ServicesDep
) -> JSONBytesResponse:
    """Run a failed, cancelled or aborted job again (409 for any other state)."""
    job = await services.jobs.retry(job_id, tenant=str(principal.organization_id))
    return JSONBytesResponse(job_out(job))


@router.post("/{job_id}/cancel", response_model=JobOut, responses=error_responses(409))
async def cancel_job(
    job_id: JobIdPath, principal: AdminDep, services: ServicesDep
) -> JSONBytesResponse:
    """Cancel a waiting job or abort a running one (409 for a finished job)."""
    job = await services.jobs.cancel(job_id, tenant=str(principal.organization_id))
    return JSONBytesResponse(job_out(job))
