"""casebook's background jobs: CSV imports, case report PDFs, notification fan-out and
delivery.

* ``casebook.imports.run`` (queue ``imports``): reads an uploaded CSV into the ledger,
  reporting bytes read as progress; safe to run again (see
  :func:`casebook.imports.run_queued_import`). Its file is deleted once the import is
  settled or its last attempt ends.

* ``casebook.imports.sweep`` (every 15 minutes): settles imports nothing will finish
  (their job was cancelled or died; a CLI import's process ended) and deletes upload files
  no waiting import needs.
* ``casebook.reports.generate`` (queue ``reports``): loads a case's figures, renders the PDF
  in the worker's process pool, then marks the ``reports`` row ready *and* enqueues the
  "report ready" fan-out in one fenced transaction (exactly once in effect).
* ``casebook.notify.fan_out``: one send job per recipient, enqueued atomically.
* ``casebook.notify.send`` (queue ``notifications``, higher priority, rate-limited across
  workers): hands the message to the pluggable sender inside its fenced transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from casebook.imports import TIME_LIMIT as IMPORT_TIME_LIMIT
from casebook.imports import run_queued_import, spool_path, sweep_uploads
from casebook.models import (
    Case,
    Report,
    ReportStatus,
    Role,
    User,
    utcnow,
)
from casebook.notifications import Channel, Message, OutboxSender, Sender
from casebook.report_data import one_snapshot, report_data
from casebook.reports import render_case_report
from casebook.settings import CasebookSettings
from lockstep import (
    Backoff,
    Changes,
    ConflictError,
    ImportProgress,
    JobContext,
    Jobs,
    NewJob,
    Rate,
    TaskRegistry,
    ValidationFailedError,
    acting_as,
    enqueue,
    enqueue_many,
)

T = TypeVar("T")

tasks = TaskRegistry(default_queue="default", max_attempts=5, backoff=Backoff(base=2, cap=600))
# What the SMS / e-mail gateway accepts, shared by every worker.
tasks.queue("notifications", rate=Rate(50, per=1.0))
# Each import is one long write transaction: two at a time across all workers.
tasks.queue("imports", concurrency=2)

REPORTS_DIR = "reports"


@dataclass(frozen=True, slots=True)
class TaskState:
    """What casebook's handlers get as ``ctx.state``."""

    settings: CasebookSettings
    sender: Sender = field(default_factory=OutboxSender)
    jobs: Jobs | None = None  # the sweep reads the state of import jobs
    changes: Changes | None = None  # a report reads the change-feed position it is as of

    def report_path(self, report_id: int) -> Path:
        return self.settings.data_dir.resolve() / REPORTS_DIR / f"report-{report_id}.pdf"


def audited(task: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """The task's writes are audited as ``job:{task name}`` (casebook.audit)."""

    @functools.wraps(task)
    async def run(ctx: JobContext, *args: Any, **kwargs: Any) -> T:
        with acting_as(f"job:{ctx.job.task}"):
            return await task(ctx, *args, **kwargs)

    return run


def _state(ctx: JobContext) -> TaskState:
    state = ctx.state
    if not isinstance(state, TaskState):
        raise TypeError("casebook tasks need a worker started with state=TaskState(...)")
    return state


@tasks.task(
    name="casebook.imports.run",
    queue="imports",
    max_attempts=3,
    timeout=IMPORT_TIME_LIMIT,
    unique="import:{import_id}",
    tenant="{organization_id}",
)
@audited
async def run_import(ctx: JobContext, import_id: int, organization_id: int) -> dict[str, Any]:
    """Import the queued file of import ``import_id`` (``organization_id`` is its tenant)."""
    data_dir = _state(ctx).settings.data_dir
    last_try = ctx.attempt >= ctx.job.max_attempts

    def progress(_import_id: int, p: ImportProgress) -> None:
        ctx.progress(p.bytes_read, total=p.bytes_total, message=f"{p.rows_read:,} rows read")

    settled = False
    try:
        summary = await run_queued_import(
            ctx.database, data_dir, import_id, last_try=last_try, on_progress=progress
        )
        settled = True
    except (ValidationFailedError, ConflictError) as exc:
        # The file itself is the problem (not CSV, a duplicate): the record says why and
        # another attempt would say the same.
        settled = True
        return {"import_id": import_id, "status": "failed", "message": exc.message}
    finally:
        if settled or last_try:
            spool_path(data_dir, import_id).unlink(missing_ok=True)
    return summary.as_result()


@tasks.task(name="casebook.imports.sweep", max_attempts=1, timeout=dt.timedelta(minutes=5))
@audited
async def sweep_imports(ctx: JobContext) -> dict[str, Any]:
    """Settle imports whose job ended without settling them, and delete upload files no
    waiting import needs (see :func:`casebook.imports.sweep_uploads`)."""
    state = _state(ctx)
    if state.jobs is None:
        raise TypeError("casebook.imports.sweep needs a worker whose TaskState has jobs")
    done = await sweep_uploads(ctx.database, state.jobs, state.settings.data_dir)
    return {"settled": list(done.settled), "removed": list(done.removed)}


tasks.schedule("casebook.imports.sweep", sweep_imports, every=dt.timedelta(minutes=15))


@tasks.task(
    name="casebook.reports.generate",
    queue="reports",
    max_attempts=3,
    timeout=dt.timedelta(minutes=5),
    unique="report:{report_id}",
)
@audited
async def generate_report(ctx: JobContext, report_id: int) -> dict[str, int]:
    """Render report ``report_id`` and mark it ready (or failed after the last attempt)."""
    state = _state(ctx)
    async with ctx.database.reader() as session:
        # One snapshot: the figures and the change-feed position they are as of agree.
        await one_snapshot(session, ctx.database)
        report = await session.get(Report, report_id)
        if report is None:  # its case was deleted meanwhile: nothing to render
            return {"pages": 0, "bytes": 0}
        if state.changes is None:
            raise TypeError("casebook.reports.generate needs a worker whose TaskState has changes")
        data = await report_data(session, report, state.changes.feed)
    ctx.progress(1, total=3, message="figures loaded")
    path = state.report_path(report_id)
    try:
        rendered = await ctx.run_in_process(render_case_report, data, str(path))
    except Exception:
        if ctx.attempt >= ctx.job.max_attempts:
            async with ctx.database.writer() as session:
                failed = await session.get(Report, report_id)
                if failed is not None:
                    failed.status = ReportStatus.FAILED
                    failed.finished_at = utcnow()
        raise
    ctx.progress(2, total=3, message="rendered")
    async with ctx.transaction() as session:
        ready = await session.get(Report, report_id)
        if ready is not None:
            ready.status = ReportStatus.READY
            ready.file_path = str(path)
            ready.finished_at = utcnow()
            await enqueue(
                session,
                fan_out,
                {
                    "organization_id": ready.organization_id,
                    "subject": f"Report ready: {data['title']}",
                    "body": f"Report {report_id} ({rendered['pages']} pages) is ready.",
                    "case_id": ready.case_id,
                },
            )
    return rendered


@tasks.task(name="casebook.notify.fan_out", tenant="{organization_id}", result_ttl=0)
@audited
async def fan_out(
    ctx: JobContext, organization_id: int, subject: str, body: str, case_id: int | None = None
) -> None:
    """E-mail every active analyst and admin of the organization; SMS the case's assignee."""
    async with ctx.transaction() as session:
        users = (
            await session.scalars(
                select(User)
                .where(User.organization_id == organization_id, User.is_active.is_(True))
                .where(User.role.in_([Role.ANALYST, Role.ADMIN]))
                .order_by(User.id)
            )
        ).all()
        assignee = None
        if case_id is not None:
            assignee = await session.scalar(select(Case.assignee_id).where(Case.id == case_id))
        messages: list[tuple[Channel, str]] = [("email", user.email) for user in users]
        if assignee is not None:
            messages.append(("sms", f"user:{assignee}"))
        await enqueue_many(
            session,
            [
                NewJob(
                    send_notification,
                    {
                        "organization_id": organization_id,
                        "channel": channel,
                        "recipient": recipient,
                        "subject": subject,
                        "body": body,
                    },
                )
                for channel, recipient in messages
            ],
        )


@tasks.task(
    name="casebook.notify.send",
    queue="notifications",
    priority=-10,
    max_attempts=8,
    tenant="{organization_id}",
    result_ttl=0,
)
@audited
async def send_notification(
    ctx: JobContext, organization_id: int, channel: Channel, recipient: str, subject: str, body: str
) -> None:
    """Deliver one message through the worker's sender, exactly once in effect."""
    message = Message(organization_id, channel, recipient, subject, body, job_id=ctx.job_id)
    async with ctx.transaction() as session:
        await _state(ctx).sender.send(session, message)
