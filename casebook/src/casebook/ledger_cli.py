"""``casebook import FILE --case ID [--profile NAME] [--map role=column ...]
[--save-profile NAME] [--preview]`` and ``casebook sweep-uploads``.

Both write through a Database with the change feed and the rollups installed, exactly like
the server's writes, so a running server learns of them from the change log. Failures print
one line saying what is wrong and exit non-zero. (``casebook aggregates ...`` is lockstep's
``rollups`` command group, mounted by :mod:`casebook.cli`.)
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from casebook.console import err, fail, out, run_command, settings_for
from casebook.imports import ImportSummary
from casebook.settings import CasebookSettings
from casebook.spreadsheet import inert
from lockstep import (
    Changes,
    Database,
    ImportPolicy,
    ImportProgress,
    NotFoundError,
    Spool,
    ValidationFailedError,
    acting_as,
)

T = TypeVar("T")
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the SQLite file and local state live (default: $LOCKSTEP_DATA_DIR or ./data).",
    ),
]
SHOWN = 20


def _database(settings: CasebookSettings) -> Database:
    from casebook.audit import audit_trail
    from casebook.rollups import AGGREGATES
    from casebook.services import tracking

    db = Database(settings)
    AGGREGATES.install(db)
    audit_trail().install(db)
    Changes(db, tracking())
    return db


def _bar(label: str, *, download: bool = False) -> Progress:
    count = DownloadColumn() if download else MofNCompleteColumn()
    return Progress(
        TextColumn(label), BarColumn(), count, TimeRemainingColumn(), console=err, transient=False
    )


def sweep_uploads_command(
    grace: Annotated[
        int,
        typer.Option(
            "--grace-minutes",
            min=0,
            help="Leave files younger than this alone (an upload may still be arriving).",
        ),
    ] = 60,
    data_dir: DataDir = None,
) -> None:
    """Settle imports whose job ended without them and delete upload files nobody waits for
    (what the worker's 15-minute schedule does)."""
    import datetime as dt

    from casebook.imports import sweep_uploads
    from casebook.services import Services

    settings = settings_for(data_dir, slow_query_ms=0)

    async def run() -> Any:
        services = Services.build(settings)
        try:
            return await sweep_uploads(
                services.db,
                services.jobs,
                settings.data_dir,
                grace=dt.timedelta(minutes=grace),
            )
        finally:
            await services.db.dispose()

    swept = run_command(run())
    for import_id in swept.settled:
        out.print(f"import {import_id}: failed (its job ended without it)")
    for name in swept.removed:
        out.print(f"removed uploads/{name}")
    if not swept.settled and not swept.removed:
        out.print("nothing to sweep")


def import_command(
    file: Annotated[Path, typer.Argument(help="The CSV file.", exists=True, dir_okay=False)],
    case: Annotated[int, typer.Option("--case", help="The case to import into.", min=1)],
    policy: Annotated[
        ImportPolicy,
        typer.Option(
            help="all_or_nothing: any bad row stores nothing; skip_invalid: keep good rows."
        ),
    ] = ImportPolicy.ALL_OR_NOTHING,
    report: Annotated[
        Path | None,
        typer.Option(
            "--rejects-report", help="Where to write rejected rows (default FILE.rejects.csv)."
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Read the file with this saved profile (default: the organization's profile "
            "whose header matches the file's, if any).",
        ),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="role=column or setting=value, repeatable: answers a question or corrects "
            "the detected mapping (amount=Betrag, date_order=dmy, decimal=',', "
            "sign=inverted, currency=USD).",
        ),
    ] = None,
    save_profile: Annotated[
        str | None,
        typer.Option("--save-profile", help="Save the mapping used as this profile."),
    ] = None,
    preview: Annotated[
        bool,
        typer.Option("--preview", help="Show what would be imported, and import nothing."),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Import a bank statement (CSV, OFX/QFX, camt.053, MT940, QIF) into a case, as
    downloaded (a file is imported once per case). Whatever the file does not say (an
    ambiguous date order or decimal mark, the sign of a card statement) is asked: answer
    with --map, or --save-profile once to answer it for every file of that bank."""
    from casebook.imports import ImportRequest, import_transactions
    from casebook.models import Case, ImportStatus
    from casebook.statements import parse_answers, plan

    settings = settings_for(data_dir, slow_query_ms=0)
    try:
        answers = parse_answers(mapping or [])
    except ValidationFailedError as exc:
        raise fail(exc) from None

    async def run() -> tuple[Any, Path | None]:
        from sqlalchemy import select

        db = _database(settings)
        try:
            async with db.reader() as session:
                organization = await session.scalar(
                    select(Case.organization_id).where(Case.id == case)
                )
            if organization is None:
                raise NotFoundError(f"case {case} not found")
            spool = Spool.of_path(file)
            async with db.reader() as session:
                planned = await plan(
                    session, organization, spool, answers=answers, profile=profile,
                    full=preview,
                )  # fmt: skip
            if preview or planned.survey.questions:
                return planned, None
            with _bar(f"importing {file.name}", download=True) as bar:
                task = bar.add_task("rows", total=spool.size)

                def show(_import_id: int, p: ImportProgress) -> None:
                    bar.update(task, completed=p.bytes_read)

                request = ImportRequest(
                    organization, case, spool, file.name, policy,
                    answers=answers, profile=profile, save_profile=save_profile,
                )  # fmt: skip
                summary = await import_transactions(db, request, on_progress=show)
            written = None
            if summary.outcome is not None and summary.outcome.rejects:
                written = report or file.with_name(file.name + ".rejects.csv")
                _write_rejects(written, summary.outcome.rejects)
            return summary, written
        finally:
            await db.dispose()

    with acting_as("cli:import"):
        summary, written = run_command(run())
    if not isinstance(summary, ImportSummary):
        _show_plan(summary, file)
        if summary.survey.questions:
            raise typer.Exit(1)
        return
    if summary.status is ImportStatus.IMPORTED:
        out.print(f"import {summary.id}: {summary.message} into case {case}")
    else:
        err.print(f"[bold red]import {summary.id}:[/] {summary.message}")
    if summary.outcome is not None:
        for r in summary.outcome.rejects[:SHOWN]:
            err.print(f"  row {r.row} {r.column or '(row)'}: {r.reason} {r.value!r}")
    if written is not None:
        err.print(f"rejects report: {written}")
    if summary.status is not ImportStatus.IMPORTED:
        raise typer.Exit(1)


def _write_rejects(path: Path, rejects: list[Any]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "column", "reason", "value"])
        writer.writerows([r.row, r.column, r.reason, inert(str(r.value))] for r in rejects)


def _show_plan(planned: Any, file: Path) -> None:
    """What the survey found: the mapping, the first rows, and the questions left."""
    found = planned.survey
    mapping = found.mapping
    source = f"profile {planned.profile.name!r}" if planned.profile else "detected"
    out.print(f"{file.name}: {found.format}, {found.encoding}, mapping {source}")
    for role, label in mapping.labels().items():
        out.print(f"  {role:<22} {label}")
    for key in ("decimal", "date_order", "sign", "currency", "account"):
        value = getattr(mapping, key)
        if value:
            out.print(f"  {key:<22} {value}")
    for warning in found.warnings:
        out.print(f"  [yellow]warning:[/] {warning}")
    for line, text in found.trailer:
        out.print(f"  trailer, line {line}: {text}")
    for row in found.rows[:5]:
        out.print(f"  line {row['line']}: {row.get('values') or row.get('errors')}")
    for question in found.questions:
        err.print(
            f"[bold red]question:[/] {question.text} "
            f"(answer with --map {question.key}={'|'.join(question.choices[:6])})"
        )
