"""How every ``lockstep`` command talks to its operator, and how it fails.

* Results go to stdout: rich tables, or with ``--json`` one JSON document and nothing else
  (``feed tail --json``: one document per line), for scripts.
* Messages, progress bars and errors go to stderr; progress bars only on a terminal.
* A failure is one line ``error: ...`` on stderr and a non-zero exit, never a traceback:
  **2** for a bad invocation (no or unknown ``--app``, an app lacking what the command
  needs, a bad option), **1** when the work could not be done or found a problem (database
  unreachable, schema not migrated, rollups that differ from their GROUP BY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from lockstep.cli.app import AppError, AppSource, OperatedApp
from lockstep.exceptions import DatabaseUnavailableError, LockstepError, SchemaError
from lockstep.schema import VersionedTables, check_tables

T = TypeVar("T")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The app's data directory (LOCKSTEP_DATA_DIR for this command; where the "
        "embedded SQLite file lives).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


class Failure(Exception):
    """The command ran and has bad news (exit status 1 unless ``code`` says otherwise)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as the command's one error line; return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def emit_json(data: Any, *, lines: bool = False) -> None:
    """``data`` on stdout as JSON (indented; compact with ``lines``, one per line)."""
    option = orjson.OPT_NON_STR_KEYS | (0 if lines else orjson.OPT_INDENT_2)
    typer.echo(orjson.dumps(data, option=option, default=str).decode())


def progress(label: str) -> Progress:
    """A progress bar on stderr (shown only on a terminal, so pipes stay clean)."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


def source_of(ctx: typer.Context) -> AppSource:
    found = ctx.find_object(AppSource)
    return found if found is not None else AppSource()


def run(
    ctx: typer.Context,
    data_dir: Path | None,
    work: Callable[[OperatedApp], Awaitable[T]],
    *,
    tables: Sequence[VersionedTables] = (),
    creates: bool = False,
) -> T:
    """Load the app, check the database answers and holds ``tables`` at the revisions this
    code needs, run ``work``, release everything; any failure becomes :func:`fail`. Only a
    command that ``creates`` the database may run on an SQLite file that is not there."""
    app = load(ctx, data_dir)
    problem = None if creates else missing_file(app)
    if problem is not None:
        guarded(app.close)
        raise fail(problem)
    return guarded(lambda: _checked(app, work, tables))


def load(ctx: typer.Context, data_dir: Path | None = None) -> OperatedApp:
    """The app of this invocation (``--data-dir`` passed to its factory); :func:`fail` if
    it cannot be built."""
    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    try:
        return source_of(ctx).load(**overrides)
    except AppError as exc:
        raise fail(exc.message, 2) from None
    except LockstepError as exc:
        raise fail(exc.message) from None


def guarded(coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run ``coroutine()``; expected failures become one line and an exit status."""

    async def main() -> T:
        return await coroutine()

    try:
        return asyncio.run(main())
    except AppError as exc:
        raise fail(exc.message, 2) from None
    except Failure as exc:
        raise fail(exc.message, exc.code) from None
    except LockstepError as exc:
        raise fail(exc.message) from None
    except DBAPIError as exc:
        # The driver's first line says what happened; the statement is noise here.
        first = (str(exc.orig).splitlines() or [type(exc.orig).__name__])[0]
        raise fail(f"database error: {first}") from None
    except RedisError as exc:
        raise fail(f"Redis error: {exc}") from None
    except OSError as exc:
        raise fail(f"{type(exc).__name__}: {exc}") from None
    except KeyboardInterrupt:  # Ctrl-C before a command set up its own handling of it
        raise fail("interrupted", 130) from None


async def _checked(
    app: OperatedApp, work: Callable[[OperatedApp], Awaitable[T]], tables: Sequence[VersionedTables]
) -> T:
    try:
        await reachable(app)
        if tables:
            try:
                await check_tables(app.database, *tables)
            except SchemaError as exc:
                raise Failure(f"{exc.message}\n(database: {_shown(app)})") from None
        return await work(app)
    finally:
        await app.close()


def missing_file(app: OperatedApp) -> str | None:
    """Why the app's SQLite database cannot be opened as is: connecting to a file that is
    not there would create an empty one, so say it is missing instead."""
    settings = app.database.settings
    path = make_url(settings.database_url).database
    if settings.is_sqlite and path not in (None, "", ":memory:") and not Path(str(path)).exists():
        return (
            f"database file {path} does not exist (set LOCKSTEP_DATABASE_URL or --data-dir, "
            "or create it by running the migrations)"
        )
    return None


async def reachable(app: OperatedApp) -> None:
    """Raise :class:`Failure` unless the app's database answers."""
    try:
        await app.database.ping()
    except DatabaseUnavailableError as exc:
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else exc.message
        raise Failure(f"database {_shown(app)} unreachable: {reason.splitlines()[0]}") from None


def _shown(app: OperatedApp) -> str:
    return make_url(app.database.settings.database_url).render_as_string(hide_password=True)
