"""Importing a bank statement, as downloaded, into a case's ledger.

Two ways in, one way through:

* the API queues it (:func:`queue_import`): the upload is spooled to
  ``<data_dir>/uploads/import-<id>.csv`` and the record (``queued``) and its job commit
  together; a worker runs :func:`run_queued_import`, which may run again after a crash and
  then imports nothing twice;
* the CLI imports at once (:func:`import_transactions`).

Before either, the file is *surveyed* (:func:`plan`): its format, header, column roles,
decimal mark, date order and sign convention are detected, a saved profile of the
organization whose header fingerprint matches (or the one named) answers what the file
does not say, and the request's answers override both. A file with questions left is
refused (422 with the questions): casebook never guesses a date order or a decimal mark.
The mapping used is stored with the import, which its job reads the file through.

Either way the file is recorded (``imports``) before it is read, and its rows, the record's
final status and its content-hash *claim* commit in one transaction, so a file is either
fully imported and claimed, or not imported at all. The claim is unique per case: the same
file (byte for byte) cannot be imported into a case twice, even by two uploads racing each
other; a second upload of a file that is still queued is refused at once.

Forensic checks run on the way: the running balance, where the file has one (every break
is listed in the import's findings), and the overlap with earlier imports of the same
account in the case (rows already in the ledger are left out and listed: a re-export
imports once, repeats inside one file all import). Rows are stored with their import id.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from casebook.models import Case, ImportRecord, ImportReject, ImportStatus
from casebook.statements import Plan, Reading, plan, save_profile, unanswered
from lockstep import (
    ConflictError,
    Database,
    ImportOutcome,
    ImportPolicy,
    ImportProgress,
    JobNotFoundError,
    Jobs,
    NotFoundError,
    Spool,
    ValidationFailedError,
    ingest,
)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    id: int
    status: ImportStatus
    outcome: ImportOutcome | None
    message: str

    def as_result(self) -> dict[str, Any]:
        """What the import job returns (its stored result)."""
        outcome = self.outcome
        return {
            "import_id": self.id,
            "status": self.status.value,
            "rows_imported": outcome.rows_written if outcome and outcome.committed else 0,
            "rows_rejected": outcome.rows_rejected if outcome else 0,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """A file to import into a case of an organization, and how: ``answers`` to the
    survey's questions or corrections of its mapping (``role=column``, ``date_order=dmy``,
    ``decimal=,``, ``sign=inverted``, ``currency=EUR``, ``account=...``), a ``profile`` to
    read it with (by name; by default the one whose header fingerprint matches), and a
    name to ``save_profile`` the mapping used under."""

    organization_id: int
    case_id: int
    spool: Spool
    filename: str
    policy: ImportPolicy = ImportPolicy.ALL_OR_NOTHING
    created_by_id: int | None = None
    answers: Mapping[str, str] = field(default_factory=dict)
    profile: str | None = None
    save_profile: str | None = None


LIVE = (ImportStatus.QUEUED, ImportStatus.RUNNING)
FINAL = (ImportStatus.IMPORTED, ImportStatus.REJECTED, ImportStatus.FAILED)
UPLOADS = "uploads"


def uploads_dir(data_dir: Path) -> Path:
    """Where uploads arrive and queued imports' files wait (``data_dir`` is shared by the API
    and the workers, as for report PDFs)."""
    return data_dir.resolve() / UPLOADS


def spool_path(data_dir: Path, import_id: int) -> Path:
    """Where a queued import's file waits for its worker."""
    return uploads_dir(data_dir) / f"import-{import_id}.csv"


async def claimed_by(session: AsyncSession, case_id: int, sha256: str) -> ImportRecord | None:
    return await session.scalar(
        select(ImportRecord).where(ImportRecord.case_id == case_id, ImportRecord.claim == sha256)
    )


def duplicate_error(found: ImportRecord) -> ConflictError:
    when = found.created_at.strftime("%Y-%m-%d %H:%M UTC")
    return ConflictError(
        f"this file was already imported into case {found.case_id} as import {found.id} "
        f"({found.filename!r}, {when}); importing it again would duplicate its transactions",
        details={"import_id": found.id, "sha256": found.content_sha256},
    )


async def plan_request(db: Database, request: ImportRequest) -> Plan:
    """Survey the request's file (outside any write transaction: reading on through a large
    file for an open decision must not hold the writer). Raises what :func:`plan` raises,
    and ValidationFailedError with the questions when some are left."""
    async with db.reader() as session:
        planned = await plan(
            session,
            request.organization_id,
            request.spool,
            answers=request.answers,
            profile=request.profile,
        )
    if planned.survey.questions:
        raise unanswered(planned)
    return planned


async def _new_record(
    session: AsyncSession, request: ImportRequest, status: ImportStatus, planned: Plan
) -> ImportRecord:
    """Check the case and the file, then add the import's record with the mapping
    ``planned`` (flushed: it has its id) and save the profile asked for.

    Raises NotFoundError (no such case in the organization), ConflictError (the file is
    already imported into the case, or waiting to be)."""
    case_id, spool = request.case_id, request.spool
    case = await session.scalar(
        select(Case.id).where(Case.id == case_id, Case.organization_id == request.organization_id)
    )
    if case is None:
        raise NotFoundError(f"case {case_id} not found")
    found = await claimed_by(session, case_id, spool.sha256)
    if found is not None:
        raise duplicate_error(found)
    waiting = await session.scalar(
        select(ImportRecord).where(
            ImportRecord.case_id == case_id,
            ImportRecord.content_sha256 == spool.sha256,
            ImportRecord.status.in_(LIVE),
        )
    )
    if waiting is not None:
        raise ConflictError(
            f"this file is already being imported into case {case_id} as import {waiting.id}",
            details={"import_id": waiting.id, "sha256": spool.sha256},
        )
    mapping = planned.survey.mapping
    record = ImportRecord(
        organization_id=request.organization_id,
        case_id=case_id,
        filename=request.filename[:255],
        content_sha256=spool.sha256,
        status=status,
        policy=request.policy.value,
        size_bytes=spool.size,
        encoding=spool.encoding,
        created_by_id=request.created_by_id,
        format=planned.survey.format,
        account=mapping.account[:64],
        mapping=json.dumps(mapping.to_dict()),
        findings="",
    )
    session.add(record)
    if request.save_profile:
        await save_profile(
            session, request.organization_id, request.save_profile, mapping, request.created_by_id
        )
    await session.flush()
    return record


async def queue_import(
    session: AsyncSession, data_dir: Path, request: ImportRequest, planned: Plan
) -> ImportRecord:
    """Record the import (``queued``) in the caller's transaction and move the spooled file
    to :func:`spool_path`, where its job finds it; the caller enqueues the job in the same
    transaction. Raises what :func:`_new_record` raises; if the transaction then fails, the
    caller removes the file (:func:`spool_path`)."""
    record = await _new_record(session, request, ImportStatus.QUEUED, planned)
    target = spool_path(data_dir, record.id)
    target.parent.mkdir(parents=True, exist_ok=True)
    request.spool.path.replace(target)  # same directory tree: a rename, not a copy
    return record


async def import_transactions(
    db: Database,
    request: ImportRequest,
    *,
    on_progress: Callable[[int, ImportProgress], None] | None = None,
) -> ImportSummary:
    """Import ``request`` now (the CLI's way).

    Raises NotFoundError (no such case in the organization), ConflictError (this file was
    already imported into the case). A file that cannot be read as CSV, or whose rows are
    rejected under ``all_or_nothing``, is recorded as such and nothing else is stored.
    """
    async with db.writer() as session:
        record = await _new_record(
            session, request, ImportStatus.RUNNING, await plan_request(db, request)
        )
    return await _run(db, record, request.spool, on_progress, last_try=True)


async def run_queued_import(
    db: Database,
    data_dir: Path,
    import_id: int,
    *,
    last_try: bool,
    on_progress: Callable[[int, ImportProgress], None] | None = None,
) -> ImportSummary:
    """Run queued import ``import_id`` (its job's body). Safe to run again after a crash:
    an import that reached its final status is reported, not repeated; one cut off is rolled
    back and starts over. An error stops it as ``failed`` only on the ``last_try``; before
    that the record stays ``running`` for the next attempt. Raises LookupError when the
    record or its file is gone."""
    async with db.writer() as session:
        record = await session.get(ImportRecord, import_id)
        if record is None:
            raise LookupError(f"import {import_id} is gone (its case was deleted?)")
        if record.status in FINAL:
            return ImportSummary(record.id, record.status, None, record.message)
        record.status = ImportStatus.RUNNING
    path = spool_path(data_dir, import_id)
    if not path.is_file():
        raise LookupError(f"the file of import {import_id} is gone from {path}")
    spool = Spool(path, record.content_sha256, record.size_bytes, record.encoding)
    return await _run(db, record, spool, on_progress, last_try=last_try)


async def fail_import(db: Database, import_id: int, message: str) -> None:
    """Mark an import that will not run (again) failed, unless it finished meanwhile."""
    async with db.writer() as session:
        # A row write (not an UPDATE ... WHERE): the change is the record's, with its
        # organization, so the audit trail files it in that organization's chain.
        record = await session.get(ImportRecord, import_id, with_for_update=True)
        if record is not None and record.status in LIVE:
            record.status = ImportStatus.FAILED
            record.message = message[:2000]
            record.finished_at = _now()


UPLOAD_GRACE = dt.timedelta(hours=1)
TIME_LIMIT = dt.timedelta(minutes=30)  # an import's job times out after this, too
_QUEUED_FILE = re.compile(r"import-(\d+)\.csv")


@dataclass(frozen=True, slots=True)
class Sweep:
    """What :func:`sweep_uploads` did."""

    settled: tuple[int, ...]  # imports marked failed: their job ended without settling them
    removed: tuple[str, ...]  # files deleted from <data_dir>/uploads


async def sweep_uploads(
    db: Database, jobs: Jobs, data_dir: Path, *, grace: dt.timedelta = UPLOAD_GRACE
) -> Sweep:
    """Settle the imports whose job ended without settling them (cancelled before it ran,
    or its last attempt died with its worker) as ``failed``, then delete every file in
    ``<data_dir>/uploads`` that no waiting import needs: theirs, and uploads cut off before
    they were queued. Files younger than ``grace`` are left alone: an upload may still be
    arriving, or its import not yet committed. Safe to run anywhere, any time, repeatedly."""
    settled = await settle_abandoned(db, jobs)
    async with db.reader() as session:
        needed = set(
            await session.scalars(select(ImportRecord.id).where(ImportRecord.status.in_(LIVE)))
        )
    cutoff = (_now() - grace).timestamp()
    removed = await asyncio.to_thread(_remove_unneeded, uploads_dir(data_dir), needed, cutoff)
    return Sweep(tuple(settled), tuple(removed))


async def settle_abandoned(db: Database, jobs: Jobs, *where: ColumnElement[bool]) -> list[int]:
    """Mark ``failed`` the waiting imports (those matching ``where``) that nothing will finish:
    those whose job ended without settling them (cancelled before it ran, or its last attempt
    died with its worker), and those the CLI started more than :data:`TIME_LIMIT` ago (its
    process ended before the import did). Their ids."""
    async with db.reader() as session:
        waiting = (
            await session.execute(
                select(ImportRecord.id, ImportRecord.job_id, ImportRecord.created_at).where(
                    ImportRecord.status.in_(LIVE), *where
                )
            )
        ).all()
    overdue = _now() - TIME_LIMIT
    settled: list[int] = []
    for import_id, job_id, created_at in waiting:
        if job_id is None:  # run by the CLI, in its own process
            if created_at > overdue:
                continue
            reason = "interrupted: the command running it ended before the import did"
        else:
            try:
                job = await jobs.get(job_id)
            except JobNotFoundError:
                reason = "its job is gone"
            else:
                if not job.state.is_final:
                    continue
                reason = f"its job ended {job.state.value}" + (
                    f": {job.error}" if job.error else ""
                )
        await fail_import(db, import_id, reason)
        settled.append(import_id)
    return settled


def _remove_unneeded(folder: Path, needed: set[int], cutoff: float) -> list[str]:
    """Delete the files of ``folder`` last written before ``cutoff`` (a timestamp), except
    the queued files of the imports ``needed``; their names."""
    removed: list[str] = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else ():
        queued = _QUEUED_FILE.fullmatch(path.name)
        if queued is not None and int(queued.group(1)) in needed:
            continue
        with contextlib.suppress(FileNotFoundError):  # another sweep got there first
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
    return removed


async def _run(
    db: Database,
    record: ImportRecord,
    spool: Spool,
    on_progress: Callable[[int, ImportProgress], None] | None,
    *,
    last_try: bool,
) -> ImportSummary:
    """Read ``spool`` into the ledger as ``record`` says, and settle the record."""
    import_id, case_id = record.id, record.case_id
    policy = ImportPolicy(record.policy)
    if not record.mapping:
        # Queued before statements were surveyed at upload (0006): survey it now.
        try:
            async with db.reader() as session:
                planned = await plan(session, record.organization_id, spool)
            if planned.survey.questions:
                raise unanswered(planned)
        except ValidationFailedError as exc:
            await fail_import(db, import_id, exc.message)
            raise
        record.mapping = json.dumps(planned.survey.mapping.to_dict())
    # One creation time for the whole file: its rows are created by one transaction.
    reading = Reading.of(record, _now())

    async def finish(session: AsyncSession, outcome: ImportOutcome) -> None:
        await _finish(session, import_id, spool.sha256, outcome, claim=True, reading=reading)

    try:
        outcome = await ingest(
            db,
            spool,
            reading.schema,
            reading.write,
            policy=policy,
            before_commit=finish,
            on_progress=(lambda p: on_progress(import_id, p)) if on_progress else None,
            **reading.options,
        )
    except ValidationFailedError as exc:  # not CSV, or required columns missing
        await fail_import(db, import_id, exc.message)
        exc.details = {"import_id": import_id, "errors": exc.details}
        raise
    except IntegrityError:
        # Another upload of the same file committed first (the claim is unique per case).
        async with db.reader() as session:
            found = await claimed_by(session, case_id, spool.sha256)
        if found is None:
            await fail_import(db, import_id, "interrupted by a database error")
            raise
        duplicate = duplicate_error(found)
        await fail_import(db, import_id, duplicate.message)
        raise duplicate from None
    except BaseException:
        # Whatever stopped it (a database error, a cancelled job), nothing was stored.
        if last_try:
            await fail_import(db, import_id, "interrupted")
        raise
    if outcome.committed:
        outcome.rows_written -= reading.left_out  # read and valid, but not stored
    if not outcome.committed:
        async with db.writer() as session:
            await _finish(session, import_id, spool.sha256, outcome, claim=False, reading=reading)
        status = ImportStatus.REJECTED
        message = (
            f"{outcome.rows_rejected} of {outcome.rows_read} rows were rejected; nothing was "
            "imported (policy all_or_nothing). Fix them and upload the file again."
        )
    else:
        status = ImportStatus.IMPORTED
        message = f"{outcome.rows_written} transactions imported"
        if outcome.rows_rejected:
            message += f", {outcome.rows_rejected} rows rejected"
        message += reading.summary()
    return ImportSummary(import_id, status, outcome, message)


async def _finish(
    session: AsyncSession,
    import_id: int,
    sha256: str,
    outcome: ImportOutcome,
    *,
    claim: bool,
    reading: Reading,
) -> None:
    status = ImportStatus.IMPORTED if claim else ImportStatus.REJECTED
    record = await session.get(ImportRecord, import_id)
    assert record is not None
    record.status = status
    record.claim = sha256 if claim else None
    record.delimiter = outcome.delimiter
    record.rows_read = outcome.rows_read
    record.rows_imported = outcome.rows_written - reading.left_out if claim else 0
    record.rows_rejected = outcome.rows_rejected
    record.finished_at = _now()
    record.findings = json.dumps(reading.findings(outcome))
    if claim:
        record.message = f"{record.rows_imported} transactions imported{reading.summary()}"
    if outcome.rejects_truncated:
        record.message = f"only the first {len(outcome.rejects)} rejects are listed"
    await session.flush()  # the claim's uniqueness is checked here, inside the transaction
    if outcome.rejects:
        await session.execute(
            insert(ImportReject),
            [
                {
                    "organization_id": record.organization_id,
                    "import_id": import_id,
                    "row_number": r.row,
                    "column": r.column[:100],
                    "reason": r.reason[:300],
                    "value": r.value[:200],
                }
                for r in outcome.rejects
            ],
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
