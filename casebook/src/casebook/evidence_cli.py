"""``casebook evidence verify [--case ID]``: hash every stored evidence file again.

Each live item's file is read and hashed (a progress bar over the bytes, on stderr), the
outcome recorded as a ``verified`` custody event (actor ``cli:evidence verify``) through a
Database with the change feed and the audit trail installed, like the server's writes.
Prints a summary and every item that failed; exits 1 when any file is missing or no longer
matches its SHA-256.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import func, select

from casebook import evidence
from casebook.console import err, out, run_command, settings_for
from casebook.ledger_cli import DataDir, _bar, _database
from casebook.models import Case, Evidence
from casebook.settings import CasebookSettings
from lockstep import NotFoundError, acting_as

ACTOR = "cli:evidence verify"
evidence_app = typer.Typer(no_args_is_help=True, help="Evidence files: check their integrity.")


async def verify_all(
    settings: CasebookSettings, case_id: int | None
) -> list[tuple[Evidence, str, str | None]]:
    """Every live item (of ``case_id``) with its outcome and the hash seen, in id order."""
    db = _database(settings)
    found: list[tuple[Evidence, str, str | None]] = []
    try:
        stmt = select(Evidence).where(Evidence.deleted_at.is_(None))
        if case_id is not None:
            async with db.reader() as session:
                if await session.scalar(select(func.count()).where(Case.id == case_id)) == 0:
                    raise NotFoundError(f"case {case_id} not found")
            stmt = stmt.where(Evidence.case_id == case_id)
        async with db.reader() as session:
            items = list((await session.scalars(stmt.order_by(Evidence.id))).all())
        total = sum(item.size_bytes for item in items)
        with _bar("verifying", download=True) as bar, acting_as(ACTOR):
            task = bar.add_task("evidence", total=total)
            for item in items:
                seen = await evidence.rehash(settings.data_dir, item)
                async with db.writer() as session:
                    current = await session.get(Evidence, item.id)
                    if current is None or current.deleted_at is not None:
                        continue  # deleted meanwhile: nothing left to check
                    outcome = evidence.record_verification(
                        session, current, seen, actor=ACTOR, user_id=None
                    )
                found.append((item, outcome, seen))
                bar.advance(task, item.size_bytes)
    finally:
        await db.dispose()
    return found


@evidence_app.command("verify")
def verify_command(
    case: Annotated[
        int | None, typer.Option("--case", min=1, help="Only this case's evidence.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Re-hash every stored evidence file, record each outcome in its custody history, and
    exit 1 if any file is missing or does not match its SHA-256."""
    settings = settings_for(data_dir, slow_query_ms=0)
    found = run_command(verify_all(settings, case))
    failed = [(item, outcome, seen) for item, outcome, seen in found if outcome != evidence.OK]
    if failed:
        table = Table("evidence", "case", "file", "outcome", "expected", "seen", title="Failed")
        for item, outcome, seen in failed:
            table.add_row(
                str(item.id),
                str(item.case_id),
                item.filename,
                outcome.upper(),
                item.sha256[:16],
                (seen or "-")[:16],
            )
        out.print(table)
    size = sum(item.size_bytes for item, _, _ in found)
    out.print(
        f"verified {len(found)} evidence file(s), {size:,} bytes: "
        f"{len(found) - len(failed)} ok, "
        f"{sum(1 for _, o, _ in failed if o == evidence.MISMATCH)} mismatch, "
        f"{sum(1 for _, o, _ in failed if o == evidence.MISSING)} missing"
    )
    if failed:
        err.print("[bold red]integrity check failed[/]")
        raise typer.Exit(1)
