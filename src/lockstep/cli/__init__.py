"""The operator CLI: ``lockstep --app module:attr <group> <command>`` (``docs/cli.md``).

Groups: ``feed`` (status, tail), ``cache`` (stats), ``rollups`` (list, verify, repair,
rebuild), ``jobs`` (list, show, stats, retry, cancel, pause, resume) and ``migration``
(status, check, upgrade, rollup, tables). The app is any object with a ``database``
(:class:`lockstep.cli.app.CliApp`); nothing here is imported by ``import lockstep``, and
its own dependencies (typer, rich) are needed only to run it.
"""

from __future__ import annotations


def main() -> None:
    """Entry point of the ``lockstep`` console script."""
    from lockstep.cli.root import main as run

    run()
