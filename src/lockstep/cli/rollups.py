"""``lockstep rollups list|verify|repair|rebuild``: prove the app's rollups equal to their
GROUP BY, and fix them, with the :class:`~lockstep.Aggregates` API.

``verify`` exits 1 when any rollup differs (a table of the differing groups, or with
``--json`` every discrepancy), so it can gate a deploy or run from cron. ``repair``
rewrites exactly the groups that differ, ``rebuild`` every group; both write in short
transactions through the app's database, so the change feed invalidates cached dashboards
and the app keeps serving. A rollup whose table does not exist yet (its migration has not
run) is reported as such, never as thousands of missing groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table
from sqlalchemy import func, inspect, select

from lockstep.aggregates import Discrepancy, Rewrite, Rollup, Verification
from lockstep.cli.app import OperatedApp
from lockstep.cli.console import AsJson, DataDir, emit_json, out, progress, run
from lockstep.exceptions import SchemaError

rollups_app = typer.Typer(
    no_args_is_help=True, help="Dashboard rollups: verify them against a GROUP BY, repair, rebuild."
)

Names = Annotated[
    list[str] | None,
    typer.Option("--rollup", help="Only this rollup (repeatable; default: all of them)."),
]
SHOWN = 20


async def selected(app: OperatedApp, names: Sequence[str] | None) -> list[Rollup]:
    """The named rollups (all by default), each checked to have its table."""
    rollups = app.aggregates.select(names)

    def missing(connection: Any) -> list[str]:
        found = inspect(connection)
        return [r.name for r in rollups if not found.has_table(r.name)]

    async with app.database.reader_engine.connect() as connection:
        absent = await connection.run_sync(missing)
    if absent:
        raise SchemaError(
            f"rollup table(s) {', '.join(absent)} do not exist: their migration has not run "
            f"(`lockstep migration rollup {absent[0]}` writes one; then run your migrations)"
        )
    return rollups


def _reporter(bar: Progress) -> Callable[[str, int, int], None]:
    tasks: dict[str, TaskID] = {}

    def update(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=max(total, 1))
        bar.update(tasks[name], completed=done, total=max(total, 1))

    return update


def _discrepancy(d: Discrepancy) -> dict[str, Any]:
    return {"group": d.group, "expected": d.expected, "actual": d.actual, "text": d.describe()}


def _verification(v: Verification) -> dict[str, Any]:
    return {
        "rollup": v.rollup,
        "groups": v.groups,
        "ok": v.ok,
        "discrepancies": [_discrepancy(d) for d in v.discrepancies],
    }


def _describe(v: Verification) -> None:
    if v.ok:
        out.print(f"{v.rollup}: {v.groups} groups, all equal to the GROUP BY", highlight=False)
        return
    table = Table(title=f"{v.rollup}: {v.groups} groups, {len(v.discrepancies)} differ")
    table.add_column("group")
    table.add_column("difference")
    for d in v.discrepancies[:SHOWN]:
        where, _, what = d.describe().partition("] ")
        table.add_row(where.lstrip("["), what)
    out.print(table)
    if len(v.discrepancies) > SHOWN:
        out.print(f"... and {len(v.discrepancies) - SHOWN} more (--json lists all)")


@rollups_app.command("list")
def list_command(ctx: typer.Context, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """The app's rollups: source, keys, measures, filter, and how many groups each holds."""

    async def listing(app: OperatedApp) -> list[dict[str, Any]]:
        rollups = app.aggregates.select(None)
        listed = []
        async with app.database.reader_engine.connect() as connection:
            present = await connection.run_sync(
                lambda c: {r.name for r in rollups if inspect(c).has_table(r.name)}
            )
            for r in rollups:
                groups = None
                if r.name in present:
                    groups = await connection.scalar(select(func.count()).select_from(r.table))
                listed.append(
                    {
                        "rollup": r.name,
                        "source": r.source.name,
                        "keys": [k.name for k in r.keys],
                        "measures": [f"{m.kind}:{m.name}" for m in r.measures],
                        "where": r.where,
                        "groups": groups,
                    }
                )
        return listed

    listed = run(ctx, data_dir, listing)
    if as_json:
        emit_json(listed)
        return
    table = Table()
    for column in ("rollup", "source", "keys", "measures", "filter", "groups"):
        table.add_column(column, overflow="fold")
    for item in listed:
        table.add_row(
            item["rollup"],
            item["source"],
            ", ".join(item["keys"]),
            ", ".join(item["measures"]),
            ", ".join(f"{k}={v}" for k, v in item["where"].items()),
            "table missing" if item["groups"] is None else str(item["groups"]),
        )
    out.print(table)


@rollups_app.command("verify")
def verify_command(
    ctx: typer.Context, names: Names = None, data_dir: DataDir = None, as_json: AsJson = False
) -> None:
    """Compare each rollup with a full GROUP BY of its source (exit 1 if any differs)."""

    async def verify(app: OperatedApp) -> list[Verification]:
        rollups = await selected(app, names)
        with progress("verifying") as bar:
            return await app.aggregates.verify(
                app.database, [r.name for r in rollups], progress=_reporter(bar)
            )

    reports = run(ctx, data_dir, verify)
    if as_json:
        emit_json([_verification(r) for r in reports])
    else:
        for report in reports:
            _describe(report)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@rollups_app.command("repair")
def repair_command(
    ctx: typer.Context, names: Names = None, data_dir: DataDir = None, as_json: AsJson = False
) -> None:
    """Verify, then recompute exactly the groups that differ."""

    async def repair(app: OperatedApp) -> list[tuple[Verification, Rewrite]]:
        rollups = await selected(app, names)
        with progress("checking") as bar:
            return await app.aggregates.repair(
                app.database, [r.name for r in rollups], progress=_reporter(bar)
            )

    results = run(ctx, data_dir, repair)
    if as_json:
        emit_json(
            [{**_verification(v), "repaired_groups": w.groups} for v, w in results],
        )
        return
    for verification, rewrite in results:
        _describe(verification)
        if rewrite.groups:
            out.print(f"{rewrite.rollup}: repaired {rewrite.groups} groups", highlight=False)


@rollups_app.command("rebuild")
def rebuild_command(
    ctx: typer.Context, names: Names = None, data_dir: DataDir = None, as_json: AsJson = False
) -> None:
    """Recompute every group from the source, chunk by chunk, while the app keeps running."""

    async def rebuild(app: OperatedApp) -> list[Rewrite]:
        rollups = await selected(app, names)
        with progress("rebuilding") as bar:
            return await app.aggregates.rebuild(
                app.database, [r.name for r in rollups], progress=_reporter(bar)
            )

    rewrites = run(ctx, data_dir, rebuild)
    if as_json:
        emit_json([{"rollup": w.rollup, "rebuilt_groups": w.groups} for w in rewrites])
        return
    for rewrite in rewrites:
        out.print(f"{rewrite.rollup}: rebuilt {rewrite.groups} groups", highlight=False)
