"""``casebook worker``: run a job worker for casebook's tasks.

``casebook jobs ...`` (list, show, stats, retry, cancel, pause, resume) is lockstep's own
``jobs`` command group, mounted by :mod:`casebook.cli`. A malformed ``--queues`` prints
one line saying what is wrong and exits non-zero; nothing prints a traceback.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from casebook.console import fail, out, settings_for
from casebook.settings import CasebookSettings
from lockstep import LockstepError

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the SQLite file and local state live (default: $LOCKSTEP_DATA_DIR or ./data).",
    ),
]


def parse_queues(spec: str | None, concurrency: int | None) -> dict[str, int] | None:
    """``"reports,notifications:4"`` → ``{"reports": concurrency, "notifications": 4}``."""
    if spec is None:
        return None
    queues: dict[str, int] = {}
    for item in spec.split(","):
        name, _, slots = item.strip().partition(":")
        if not name or (slots and (not slots.isdigit() or int(slots) < 1)):
            raise typer.BadParameter(
                f"{item.strip()!r}: expected a queue name, optionally followed by :slots "
                "(e.g. reports,notifications:4)",
                param_hint="--queues",
            )
        queues[name] = int(slots) if slots else (concurrency or 10)
    return queues


def worker_command(
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            help="Comma-separated queues to serve, each optionally name:slots "
            "(default: every queue casebook has).",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Slots per queue (default: $LOCKSTEP_JOBS_CONCURRENCY).", min=1),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Worker name shown on its jobs (default: host name).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port.", min=1, max=65535),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run a job worker until SIGTERM / Ctrl-C (running jobs finish or are released)."""
    from casebook.cli import _require_current

    parsed = parse_queues(queues, concurrency)
    try:
        settings = settings_for(data_dir)
        asyncio.run(_require_current(settings))
        asyncio.run(_work(settings, parsed, concurrency, name, metrics_port))
    except LockstepError as exc:
        raise fail(exc) from None


async def _work(
    settings: CasebookSettings,
    queues: dict[str, int] | None,
    concurrency: int | None,
    name: str | None,
    metrics_port: int | None,
) -> None:
    from prometheus_client import start_http_server

    from casebook.services import Services

    services = Services.build(settings)
    try:
        worker = services.worker(queues=queues, concurrency=concurrency, name=name)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.request_stop)
        if metrics_port is not None:
            start_http_server(metrics_port, addr="127.0.0.1", registry=services.lockstep.registry)
        # Its writes and progress reach the API processes' clients through Redis at once.
        await services.realtime.start()
        await worker.start()
        out.print(
            f"worker {worker.worker_id} serving "
            + ", ".join(f"{q} ({n} slots)" for q, n in worker.queues.items())
            + "; Ctrl-C stops"
        )
        await worker.stop_requested()
        out.print("stopping: finishing running jobs")
        await worker.stop()
    finally:
        await services.realtime.stop()
        await services.db.dispose()
