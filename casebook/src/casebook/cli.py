"""The ``casebook`` command: serve, seed, and manage the database schema.

``casebook jobs ...`` and ``casebook aggregates ...`` are lockstep's own ``jobs`` and
``rollups`` command groups, mounted here with casebook as their app (``--data-dir`` works
as everywhere else); ``lockstep --app casebook.services:lockstep_app`` runs the rest of
lockstep's operator CLI on casebook (see docs/cli.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from casebook.console import err, out, run_command, settings_for
from casebook.evidence_cli import evidence_app
from casebook.jobs_cli import worker_command
from casebook.ledger_cli import import_command, sweep_uploads_command
from casebook.settings import CasebookSettings
from lockstep import (
    CHANGE_LOG_TABLES,
    JOBS_TABLES,
    REALTIME_TABLES,
    Changes,
    Database,
    LockstepError,
    check_tables,
    current_revision,
    head_revision,
    upgrade,
)
from lockstep.cli.app import AppSource
from lockstep.cli.audit import audit_app
from lockstep.cli.jobs import jobs_app
from lockstep.cli.rollups import rollups_app

T = TypeVar("T")
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="casebook: forensic-finance case management on lockstep.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema commands.")
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
app.command("worker")(worker_command)
app.add_typer(
    rollups_app,
    name="aggregates",
    help="Check and fix the dashboard rollups against the ledger.",
)
app.add_typer(audit_app, name="audit", help="The audit trail: verify its hash chains.")
app.add_typer(evidence_app, name="evidence")
app.command("import")(import_command)
app.command("sweep-uploads")(sweep_uploads_command)


@app.callback()
def _casebook(ctx: typer.Context) -> None:
    # lockstep's mounted command groups find their app here.
    from casebook.services import lockstep_app

    ctx.obj = AppSource(factory=lockstep_app)


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the SQLite file and local state live (default: $LOCKSTEP_DATA_DIR or ./data).",
    ),
]


async def _migrate(settings: CasebookSettings) -> str | None:
    from casebook.services import MIGRATIONS

    db = Database(settings)
    try:
        await upgrade(db, MIGRATIONS)
        # The migrations may leave lockstep's tables behind what this lockstep needs.
        await check_tables(db, CHANGE_LOG_TABLES, JOBS_TABLES, REALTIME_TABLES)
        return await current_revision(db)
    finally:
        await db.dispose()


async def _require_current(settings: CasebookSettings) -> None:
    from casebook.services import MIGRATIONS

    db = Database(settings)
    try:
        current = await current_revision(db)
        head = head_revision(MIGRATIONS)
        if current != head:
            raise LockstepError(
                f"the database schema is at {current or 'nothing'}, the code expects {head}: "
                "run `casebook db upgrade` first"
            )
        await check_tables(db, CHANGE_LOG_TABLES, JOBS_TABLES, REALTIME_TABLES)
    finally:
        await db.dispose()


async def _seed(
    settings: CasebookSettings, transactions: int, reset: bool, *, only_if_empty: bool = False
) -> None:
    from sqlalchemy import func, select

    from casebook.models import Organization
    from casebook.seed import seed
    from casebook.services import tracking

    # Batched bulk inserts are slow by design; logging each one as a slow query is noise.
    db = Database(settings.model_copy(update={"slow_query_ms": 0}))
    # Capture the writes, so a running server's caches learn of them from the change log.
    Changes(db, tracking())
    try:
        if only_if_empty:
            async with db.reader() as session:
                if await session.scalar(select(func.count()).select_from(Organization)):
                    out.print("[dim]database already seeded; keeping its data[/]")
                    return
        columns = (TextColumn("seeding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task("transactions", total=transactions)
            result = await seed(
                db,
                transactions=transactions,
                reset=reset,
                progress=lambda n: bar.update(task, completed=n),
            )
        out.print(
            f"seeded {result.organizations} organizations, {result.users} users, "
            f"{result.cases} cases, {result.subjects} subjects, {result.transactions} transactions"
        )
    finally:
        await db.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    data_dir: DataDir = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Seed this many demo transactions if the database is empty (0: no seeding).",
            min=0,
        ),
    ] = 0,
) -> None:
    """Serve casebook. In embedded (SQLite) mode the schema is upgraded first."""
    import uvicorn

    from casebook.app import create_app

    settings = settings_for(data_dir)
    if settings.is_sqlite:
        run_command(_migrate(settings))
    else:
        run_command(_require_current(settings))
    if seed:
        run_command(_seed(settings, seed, reset=False, only_if_empty=True))
    out.print(
        f"casebook on [bold]http://{host}:{port}[/]  (API docs: /docs; "
        f"log in as analyst@acme.test / demo; Ctrl-C stops)"
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
    )


@app.command("seed")
def seed_command(
    transactions: Annotated[
        int, typer.Option(help="How many transactions to generate.", min=0)
    ] = 20_000,
    data_dir: DataDir = None,
    reset: Annotated[bool, typer.Option("--reset", help="Replace existing data.")] = False,
) -> None:
    """Fill the database with deterministic demo data (two organizations, users, cases...)."""
    settings = settings_for(data_dir)
    run_command(_require_current(settings))
    run_command(_seed(settings, transactions, reset))


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply every pending migration."""
    revision = run_command(_migrate(settings_for(data_dir)))
    out.print(f"database schema at revision {revision}")


@db_app.command("current")
def db_current(data_dir: DataDir = None) -> None:
    """Show the schema revision of the database and of the code."""
    from casebook.services import MIGRATIONS

    async def _current(settings: CasebookSettings) -> str | None:
        db = Database(settings)
        try:
            return await current_revision(db)
        finally:
            await db.dispose()

    revision = run_command(_current(settings_for(data_dir)))
    out.print(f"database: {revision or 'empty'}; code: {head_revision(MIGRATIONS)}")


def main() -> None:
    try:
        app()
    except LockstepError as exc:  # settings errors raised before a command body runs
        err.print(f"[bold red]error:[/] {exc.message}")
        raise SystemExit(1) from None
