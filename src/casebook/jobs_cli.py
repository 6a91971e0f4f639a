"""``casebook worker`` and ``casebook jobs ...``: run workers, inspect and steer jobs.

Bad input (an unknown job id, a job in the wrong state, a malformed ``--queues``) prints one
line saying what is wrong and exits non-zero; nothing prints a traceback.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from casebook.console import fail, out, settings_for
from casebook.settings import CasebookSettings
from lockstep import JobInfo, JobState, LockstepError

jobs_app = typer.Typer(no_args_is_help=True, help="Inspect and steer background jobs.")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the SQLite file and local state live (default: $LOCKSTEP_DATA_DIR or ./data).",
    ),
]
JobId = Annotated[int, typer.Argument(help="The job id (see `casebook jobs list`).", min=1)]


def parse_queues(spec: str | None, concurrency: int | None) -> dict[str, int] | None:
    """``"reports,notifications:4"`` → ``{"reports": concurrency, "notifications": 4}``."""
    if spec is None:
        return None
    queues: dict[str, int] = {}
    for item in spec.split(","):
        name, _, slots = item.strip().partition(":")
        if not name or (slots and (not slots.isdigit() or int(slots) < 1)):
            raise typer.BadParameter(
                f"{item.strip()!r}: expected a queue name, optionally followed by :slots "
                "(e.g. reports,notifications:4)",
                param_hint="--queues",
            )
        queues[name] = int(slots) if slots else (concurrency or 10)
    return queues


def worker_command(
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            help="Comma-separated queues to serve, each optionally name:slots "
            "(default: every queue casebook has).",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Slots per queue (default: $LOCKSTEP_JOBS_CONCURRENCY).", min=1),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Worker name shown on its jobs (default: host name).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port.", min=1, max=65535),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run a job worker until SIGTERM / Ctrl-C (running jobs finish or are released)."""
    from casebook.cli import _require_current

    parsed = parse_queues(queues, concurrency)
    try:
        settings = settings_for(data_dir)
        asyncio.run(_require_current(settings))
        asyncio.run(_work(settings, parsed, concurrency, name, metrics_port))
    except LockstepError as exc:
        raise fail(exc) from None


async def _work(
    settings: CasebookSettings,
    queues: dict[str, int] | None,
    concurrency: int | None,
    name: str | None,
    metrics_port: int | None,
) -> None:
    from prometheus_client import start_http_server

    from casebook.services import Services

    services = Services.build(settings)
    try:
        worker = services.worker(queues=queues, concurrency=concurrency, name=name)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.request_stop)
        if metrics_port is not None:
            start_http_server(metrics_port, addr="127.0.0.1", registry=services.lockstep.registry)
        await worker.start()
        out.print(
            f"worker {worker.worker_id} serving "
            + ", ".join(f"{q} ({n} slots)" for q, n in worker.queues.items())
            + "; Ctrl-C stops"
        )
        await worker.stop_requested()
        out.print("stopping: finishing running jobs")
        await worker.stop()
    finally:
        await services.db.dispose()


async def _with_jobs(data_dir: Path | None, action: Any) -> Any:
    from casebook.services import Services

    services = Services.build(settings_for(data_dir))
    try:
        return await action(services.jobs)
    finally:
        await services.db.dispose()


def _call(data_dir: Path | None, action: Any) -> Any:
    try:
        return asyncio.run(_with_jobs(data_dir, action))
    except LockstepError as exc:
        raise fail(exc) from None


def _print_jobs(jobs: list[JobInfo]) -> None:
    """A table on a terminal; tab-separated lines otherwise (for scripts and pipes)."""
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
    state: Annotated[
        list[JobState] | None, typer.Option("--state", help="Only jobs in this state (repeatable).")
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Only jobs of this queue.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1, max=1000)] = 50,
    data_dir: DataDir = None,
) -> None:
    """List jobs, newest first."""
    jobs = _call(data_dir, lambda j: j.list_jobs(states=state, queue=queue, limit=limit))
    if not jobs:
        out.print("no jobs")
        return
    _print_jobs(jobs)


@jobs_app.command("retry")
def retry_command(job_id: JobId, data_dir: DataDir = None) -> None:
    """Run a failed, cancelled or aborted job again."""
    job = _call(data_dir, lambda j: j.retry(job_id))
    out.print(f"job {job.id} ({job.task}) is {job.state.value} again")


@jobs_app.command("cancel")
def cancel_command(job_id: JobId, data_dir: DataDir = None) -> None:
    """Cancel a waiting job, or abort a running one."""
    job = _call(data_dir, lambda j: j.cancel(job_id))
    verb = "abort requested" if job.state is JobState.RUNNING else job.state.value
    out.print(f"job {job.id} ({job.task}): {verb}")


@jobs_app.command("pause")
def pause_command(
    queue: Annotated[str, typer.Argument(help="Queue to pause.")], data_dir: DataDir = None
) -> None:
    """Stop every worker from starting jobs of a queue (running jobs finish)."""
    _call(data_dir, lambda j: j.pause(queue))
    out.print(f"queue {queue} paused")


@jobs_app.command("resume")
def resume_command(
    queue: Annotated[str, typer.Argument(help="Queue to resume.")], data_dir: DataDir = None
) -> None:
    """Let workers start jobs of a paused queue again."""
    _call(data_dir, lambda j: j.resume(queue))
    out.print(f"queue {queue} resumed")


@jobs_app.command("queues")
def queues_command(data_dir: DataDir = None) -> None:
    """Waiting, scheduled and running jobs per queue."""
    stats = _call(data_dir, lambda j: j.stats())
    table = Table("queue", "queued", "scheduled", "running", "oldest waiting (s)", "paused")
    for item in stats:
        table.add_row(
            item.queue,
            str(item.queued),
            str(item.scheduled),
            str(item.running),
            f"{item.oldest_queued_seconds:.1f}",
            "yes" if item.paused else "",
        )
    out.print(table)
