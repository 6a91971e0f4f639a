"""The ``lockstep`` command: the root that reads ``--app`` and mounts the command groups.

An application with a CLI of its own mounts the same groups (``feed_app``, ``cache_app``,
``rollups_app``, ``jobs_app``, ``migration_app``, ``audit_app``) and puts an
:class:`AppSource` with its factory in the context (``ctx.obj``) from its root callback;
see ``docs/cli.md``.
"""

from __future__ import annotations

from typing import Annotated

import structlog
import typer

from lockstep.cli.app import ENV_VAR, AppSource
from lockstep.cli.audit import audit_app
from lockstep.cli.cache import cache_app
from lockstep.cli.feed import feed_app
from lockstep.cli.jobs import jobs_app
from lockstep.cli.migration import migration_app
from lockstep.cli.rollups import rollups_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="lockstep's operator CLI: the change feed, the cache, rollups, jobs and migrations "
    "of an application (--app module:attr, or $LOCKSTEP_APP).",
)
app.add_typer(feed_app, name="feed")
app.add_typer(cache_app, name="cache")
app.add_typer(rollups_app, name="rollups")
app.add_typer(jobs_app, name="jobs")
app.add_typer(migration_app, name="migration")
app.add_typer(audit_app, name="audit")


@app.callback()
def root(
    ctx: typer.Context,
    app_path: Annotated[
        str | None,
        typer.Option(
            "--app",
            envvar=ENV_VAR,
            help="The application: module:attr naming its lockstep app or a factory of it.",
            show_envvar=True,
        ),
    ] = None,
) -> None:
    """Resolving the app waits for a command that needs it (``cache stats --url`` does not).
    A caller embedding this CLI may pass its own :class:`AppSource` as ``obj``; an explicit
    ``--app`` wins over it."""
    if app_path is not None or not isinstance(ctx.obj, AppSource):
        ctx.obj = AppSource(path=app_path)


def main() -> None:
    """The console script. Log lines (slow queries and the like) go to stderr, so stdout
    holds only results (``--json`` output stays parseable)."""
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(typer.get_text_stream("stderr"))
    )
    app()
