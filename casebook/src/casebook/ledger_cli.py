"""``casebook import FILE --case ID`` and ``casebook sweep-uploads``.

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

from casebook.console import err, out, run_command, settings_for
from casebook.settings import CasebookSettings
from lockstep import (
    Changes,
    Database,
    ImportPolicy,
    ImportProgress,
    NotFoundError,
    Spool,
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
    from casebook.rollups import AGGREGATES
    from casebook.services import tracking

    db = Database(settings)
    AGGREGATES.install(db)
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
    data_dir: DataDir = None,
) -> None:
    """Import a CSV file of transactions into a case (a file is imported once per case)."""
    from casebook.imports import ImportRequest, import_transactions
    from casebook.models import Case, ImportStatus

    settings = settings_for(data_dir, slow_query_ms=0)

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
            with _bar(f"importing {file.name}", download=True) as bar:
                task = bar.add_task("rows", total=spool.size)

                def show(_import_id: int, p: ImportProgress) -> None:
                    bar.update(task, completed=p.bytes_read)

                request = ImportRequest(organization, case, spool, file.name, policy)
                summary = await import_transactions(db, request, on_progress=show)
            written = None
            if summary.outcome is not None and summary.outcome.rejects:
                written = report or file.with_name(file.name + ".rejects.csv")
                _write_rejects(written, summary.outcome.rejects)
            return summary, written
        finally:
            await db.dispose()

    summary, written = run_command(run())
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
        writer.writerows([r.row, r.column, r.reason, r.value] for r in rejects)
