"""``lockstep jobs list|show|stats|retry|cancel|pause|resume``: look at and steer the jobs
in the app's database.

Every change is the jobs API's own conditional UPDATE, so it races safely with running
workers (see ``docs/jobs.md``). Bad input (an unknown id, a job in the wrong state) prints
one line saying what is wrong and exits 1. ``list`` prints a table on a terminal and
tab-separated lines in a pipe; ``--json`` gives every field.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lockstep.cli.app import OperatedApp
from lockstep.cli.console import AsJson, DataDir, emit_json, out, run
from lockstep.jobs import JOBS_TABLES, JobInfo, JobState, QueueStats
from lockstep.jobs.admin import JobAdmin

jobs_app = typer.Typer(no_args_is_help=True, help="Inspect and steer background jobs.")

JobId = Annotated[int, typer.Argument(help="The job id (see `jobs list`).", min=1)]
Queue = Annotated[str, typer.Argument(help="The queue's name.")]
NEEDS = [JOBS_TABLES]


def _admin(app: OperatedApp) -> JobAdmin:
    jobs = app.jobs
    return jobs.admin if jobs is not None else JobAdmin(app.database)


def _print_jobs(jobs: list[JobInfo]) -> None:
    """A table on a terminal; tab-separated lines otherwise (for pipes)."""
    rows = [
        (
            str(job.id),
            job.task,
            job.queue,
            job.state.value + (f" ({job.reason})" if job.reason else ""),
            f"{job.attempt}/{job.max_attempts}",
            job.run_at.strftime("%Y-%m-%d %H:%M:%S"),
            (job.error or "")[:60],
        )
        for job in jobs
    ]
    headers = ("id", "task", "queue", "state", "attempt", "run at", "error")
    if not out.is_terminal:
        for row in (headers, *rows):
            out.print("\t".join(row), markup=False, highlight=False)
        return
    table = Table()
    for column in headers[:-1]:
        table.add_column(column, no_wrap=True)
    table.add_column(headers[-1], overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    out.print(table)


@jobs_app.command("list")
def list_command(
    ctx: typer.Context,
    state: Annotated[
        list[JobState] | None, typer.Option("--state", help="Only jobs in this state (repeatable).")
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Only jobs of this queue.")] = None,
    task: Annotated[str | None, typer.Option(help="Only jobs of this task.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1, max=1000)] = 50,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """List jobs, newest first."""

    async def listing(app: OperatedApp) -> list[JobInfo]:
        return await _admin(app).list_jobs(states=state, queue=queue, task=task, limit=limit)

    jobs = run(ctx, data_dir, listing, tables=NEEDS)
    if as_json:
        emit_json([job.to_json() for job in jobs])
    elif not jobs:
        out.print("no jobs")
    else:
        _print_jobs(jobs)


@jobs_app.command("show")
def show_command(
    ctx: typer.Context, job_id: JobId, data_dir: DataDir = None, as_json: AsJson = False
) -> None:
    """Everything stored about one job: arguments, attempts, progress, errors."""

    async def get(app: OperatedApp) -> JobInfo:
        return await _admin(app).get(job_id)

    job = run(ctx, data_dir, get, tables=NEEDS)
    if as_json:
        emit_json(job.to_json())
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in job.to_json().items():
        if name in ("traceback", "errors") or value in (None, [], {}):
            continue
        table.add_row(name, str(value))
    out.print(table)
    for item in job.errors:
        out.print(f"attempt {item.get('attempt')}: {item.get('error')}", highlight=False)
    if job.traceback:
        out.print(job.traceback, markup=False, highlight=False)


@jobs_app.command("stats")
def stats_command(ctx: typer.Context, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Waiting, scheduled and running jobs per queue; the oldest waiting job's age."""

    async def stats(app: OperatedApp) -> list[QueueStats]:
        jobs = app.jobs
        return await (jobs.stats() if jobs is not None else JobAdmin(app.database).stats())

    queues = run(ctx, data_dir, stats, tables=NEEDS)
    if as_json:
        emit_json([item.to_json() for item in queues])
        return
    table = Table("queue", "queued", "scheduled", "running", "oldest waiting (s)", "paused")
    for item in queues:
        table.add_row(
            item.queue,
            str(item.queued),
            str(item.scheduled),
            str(item.running),
            f"{item.oldest_queued_seconds:.1f}",
            "yes" if item.paused else "",
        )
    out.print(table)


@jobs_app.command("retry")
def retry_command(ctx: typer.Context, job_id: JobId, data_dir: DataDir = None) -> None:
    """Run a failed, cancelled or aborted job again."""

    async def retry(app: OperatedApp) -> JobInfo:
        return await _admin(app).retry(job_id)

    job = run(ctx, data_dir, retry, tables=NEEDS)
    out.print(f"job {job.id} ({job.task}) is {job.state.value} again", highlight=False)


@jobs_app.command("cancel")
def cancel_command(ctx: typer.Context, job_id: JobId, data_dir: DataDir = None) -> None:
    """Cancel a waiting job, or ask a running one to abort."""

    async def cancel(app: OperatedApp) -> JobInfo:
        return await _admin(app).cancel(job_id)

    job = run(ctx, data_dir, cancel, tables=NEEDS)
    verb = "abort requested" if job.state is JobState.RUNNING else job.state.value
    out.print(f"job {job.id} ({job.task}): {verb}", highlight=False)


@jobs_app.command("pause")
def pause_command(ctx: typer.Context, queue: Queue, data_dir: DataDir = None) -> None:
    """Stop every worker from starting jobs of a queue (running jobs finish)."""

    async def pause(app: OperatedApp) -> None:
        await _admin(app).set_paused(queue, True)

    run(ctx, data_dir, pause, tables=NEEDS)
    out.print(f"queue {queue} paused", highlight=False)


@jobs_app.command("resume")
def resume_command(ctx: typer.Context, queue: Queue, data_dir: DataDir = None) -> None:
    """Let workers start jobs of a paused queue again."""

    async def resume(app: OperatedApp) -> None:
        await _admin(app).set_paused(queue, False)

    run(ctx, data_dir, resume, tables=NEEDS)
    out.print(f"queue {queue} resumed", highlight=False)
