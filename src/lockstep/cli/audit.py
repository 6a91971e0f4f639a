"""``lockstep audit verify``: prove the app's audit trail is intact.

Every chain (one per tenant, or the one named with ``--chain``) is recomputed from its first
entry, a page at a time; the first entry altered, removed or reordered is reported and the
command exits 1, so it can run from cron or gate an export. The audit tables must be at the
revision this lockstep needs (``AUDIT_TABLES`` in the app's migrations).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from lockstep.audit import AUDIT_TABLES, ChainReport, verify_chains
from lockstep.cli.app import OperatedApp
from lockstep.cli.console import AsJson, DataDir, emit_json, fail, out, run

audit_app = typer.Typer(no_args_is_help=True, help="The audit trail: verify its hash chains.")


def _report(r: ChainReport) -> dict[str, Any]:
    broken = None if r.broken is None else {"seq": r.broken.seq, "reason": r.broken.reason}
    return {"chain": r.chain, "entries": r.entries, "ok": r.ok, "broken": broken}


@audit_app.command("verify")
def verify_command(
    ctx: typer.Context,
    chains: Annotated[
        list[str] | None,
        typer.Option("--chain", help="Only this chain (repeatable; default: all of them)."),
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Recompute every audit chain; exit 1 at the first broken one."""

    async def checking(app: OperatedApp) -> list[ChainReport]:
        return await verify_chains(app.database, chains or None)

    reports = run(ctx, data_dir, checking, tables=[AUDIT_TABLES])
    if as_json:
        emit_json([_report(r) for r in reports])
    else:
        table = Table()
        for column in ("chain", "entries", "state"):
            table.add_column(column)
        for r in reports:
            state = "intact" if r.broken is None else f"BROKEN at {r.broken.seq}: {r.broken.reason}"
            table.add_row(r.chain, str(r.entries), state)
        out.print(table if reports else "no audit entries yet")
    broken = [r for r in reports if not r.ok]
    if broken:
        raise fail(f"{len(broken)} audit chain(s) broken: {', '.join(r.chain for r in broken)}")
