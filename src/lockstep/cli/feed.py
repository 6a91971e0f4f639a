"""``lockstep feed status`` and ``lockstep feed tail [--follow]``: the change feed as an
operator sees it.

``status`` reads the log's head, generation, compaction watermark and size and, when the
app runs with Redis, where the invalidation relay stands (its lease holder and how many
change sets it has not read yet). ``tail`` prints the last change sets, or with
``--follow`` every change set as it commits, in commit order, until Ctrl-C; ``--json``
prints one JSON document per change set with the cursor to resume from (``--from``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
from collections import Counter
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import func, select

from lockstep.cache.relay import CURSOR, LEASE
from lockstep.changes import CHANGE_LOG_TABLES, ChangeFeed, Cursor
from lockstep.changes.log import COMPACTED_BELOW, changes_table, decode_row
from lockstep.cli.app import OperatedApp
from lockstep.cli.console import AsJson, DataDir, emit_json, err, out, run
from lockstep.exceptions import CursorExpiredError
from lockstep.schema import meta_table
from lockstep.types import Change, ChangeSet

feed_app = typer.Typer(no_args_is_help=True, help="The change feed: status and tail.")

# Counting what the relay has not read costs reading it; past this many, "at least".
LAG_CAP = 10_000


async def _status(app: OperatedApp) -> dict[str, Any]:
    feed = ChangeFeed(app.database)
    head = await feed.head()
    t = changes_table
    async with app.database.reader() as session:
        size = (
            await session.execute(
                select(
                    func.count(),
                    func.max(t.c.id),
                    func.min(t.c.created_at),
                    func.max(t.c.created_at),
                )
            )
        ).one()
        compacted = await session.scalar(
            select(meta_table.c.value).where(meta_table.c.name == COMPACTED_BELOW)
        )
    return {
        "generation": head.generation,
        "head": head.encode(),
        "last_id": size[1],
        "rows": int(size[0]),
        "oldest_at": _iso(size[2]),
        "newest_at": _iso(size[3]),
        "compacted_below": int(compacted or 0),
        "relay": await _relay(app, feed),
    }


async def _relay(app: OperatedApp, feed: ChangeFeed) -> dict[str, Any] | None:
    runtime = app.runtime
    found = getattr(runtime.backend, "relay", None) if runtime is not None else None
    if found is None:
        return None
    stamps = found.stamps
    holder, lease_ms = await stamps.lease_holder(LEASE)
    saved = await stamps.load(CURSOR)
    relay: dict[str, Any] = {
        "holder": holder,
        "lease_ms_left": lease_ms,
        "cursor": saved,
        "lag": None,
        "lag_at_least": False,
        "cursor_expired": False,
    }
    if saved:
        try:
            behind, _ = await feed.since(saved, limit=LAG_CAP)
        except CursorExpiredError:
            relay["cursor_expired"] = True
        else:
            relay["lag"] = len(behind)
            relay["lag_at_least"] = len(behind) == LAG_CAP
    return relay


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


@feed_app.command("status")
def status_command(ctx: typer.Context, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """The log's head cursor, generation, compaction watermark and size; the relay's
    position and lag when the app runs with Redis."""
    status = run(ctx, data_dir, _status, tables=[CHANGE_LOG_TABLES])
    if as_json:
        emit_json(status)
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("generation", status["generation"])
    table.add_row("last change set", str(status["last_id"] or "none yet"))
    table.add_row(
        "rows kept",
        f"{status['rows']} ({status['oldest_at'] or '-'} .. {status['newest_at'] or '-'})",
    )
    table.add_row("compacted below", str(status["compacted_below"]))
    table.add_row("head cursor", status["head"])
    relay = status["relay"]
    if relay is None:
        table.add_row("relay", "none (embedded mode: no Redis)")
    else:
        lag = "unknown (no cursor saved yet)" if relay["lag"] is None else str(relay["lag"])
        if relay["lag_at_least"]:
            lag = f"at least {lag}"
        if relay["cursor_expired"]:
            lag = "its cursor is older than the kept log (it restarts from head)"
        table.add_row("relay lease", relay["holder"] or "not held")
        table.add_row("relay behind by", f"{lag} change sets")
    out.print(table)


def describe(changeset: ChangeSet) -> str:
    """One line per change set: id, txid and what it touched, per table and operation."""
    counts: Counter[tuple[str, str]] = Counter((c.table, c.op) for c in changeset.changes)
    keys: dict[tuple[str, str], list[str]] = {}
    for change in changeset.changes:
        if change.key is not None:
            keys.setdefault((change.table, change.op), []).append(",".join(change.key))
    parts = []
    for (table, op), count in sorted(counts.items()):
        named = keys.get((table, op), [])
        shown = f"[{' '.join(named[:5])}{' ...' if len(named) > 5 else ''}]" if named else ""
        parts.append(f"{table} {op}{f' x{count}' if count > 1 else ''}{shown}")
    return f"#{changeset.id} txid {changeset.txid}: " + "; ".join(parts)


def changeset_json(changeset: ChangeSet, cursor: Cursor | None) -> dict[str, Any]:
    return {
        "id": changeset.id,
        "txid": changeset.txid,
        "cursor": cursor.encode() if cursor is not None else None,
        "changes": [_change(c) for c in changeset.changes],
    }


def _change(change: Change) -> dict[str, Any]:
    return {
        "table": change.table,
        "op": change.op,
        "key": list(change.key) if change.key is not None else None,
        "scopes": {column: sorted(values) for column, values in change.scopes.items()},
        "columns": sorted(change.columns) if change.columns is not None else None,
    }


def _print(changeset: ChangeSet, cursor: Cursor | None, json_lines: bool) -> None:
    if json_lines:
        emit_json(changeset_json(changeset, cursor), lines=True)
    else:
        out.print(describe(changeset), markup=False, highlight=False)


async def _last(app: OperatedApp, limit: int) -> list[ChangeSet]:
    t = changes_table
    async with app.database.reader() as session:
        rows = (
            await session.execute(
                select(t.c.id, t.c.txid, t.c.payload).order_by(t.c.id.desc()).limit(limit)
            )
        ).all()
    return [decode_row(r.id, r.txid, r.payload) for r in reversed(rows)]


async def _follow(app: OperatedApp, start: str, json_lines: bool) -> None:
    feed = ChangeFeed(app.database)
    cursor: Cursor | None
    if start == "head":
        cursor = await feed.head()
    elif start == "start":
        cursor = None
    else:
        cursor = Cursor.decode(start)
        await feed.since(cursor, limit=1)  # an expired or foreign cursor fails here, clearly
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    where = "the head" if start == "head" else ("the oldest kept" if start == "start" else "--from")
    err.print(f"following the change feed from {where}; Ctrl-C stops", highlight=False)
    poll = app.database.settings.feed_poll_seconds

    async def follow() -> None:
        async for changeset, position in feed.follow(cursor, poll_interval=poll):
            _print(changeset, position, json_lines)

    follower = asyncio.create_task(follow())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({follower, stopped}, return_when=asyncio.FIRST_COMPLETED)
    follower.cancel()
    stopped.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower  # re-raises the follower's own error, if that is why it ended


@feed_app.command("tail")
def tail_command(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print change sets as they commit, until Ctrl-C.")
    ] = False,
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="With --follow: 'head' (what commits from now), 'start' (the oldest kept) "
            "or a cursor printed by an earlier --json run.",
        ),
    ] = "head",
    limit: Annotated[int, typer.Option(help="Without --follow: how many of the last.", min=1)] = 10,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """The last change sets, or (--follow) every change set as it commits."""
    if not follow:
        if start != "head":
            raise typer.BadParameter("--from needs --follow", param_hint="--from")
        for changeset in run(
            ctx, data_dir, lambda app: _last(app, limit), tables=[CHANGE_LOG_TABLES]
        ):
            _print(changeset, None, as_json)
        return
    if start not in ("head", "start"):
        try:
            Cursor.decode(start)
        except CursorExpiredError:
            raise typer.BadParameter(
                "not a cursor: use head, start or a cursor from --json output", param_hint="--from"
            ) from None
    run(ctx, data_dir, lambda app: _follow(app, start, as_json), tables=[CHANGE_LOG_TABLES])
    if not as_json:
        err.print("stopped", highlight=False)
