"""A real worker process for the fault tests (killed with SIGKILL, stopped with SIGTERM).

    python worker_process.py --url URL --name NAME [--lease S] [--poll S] [--concurrency N]

Prints ``ready <worker id>`` once it claims; exits 0 after a graceful SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from fault_tasks import tasks  # type: ignore[import-not-found]

from lockstep.db import Database
from lockstep.jobs import Jobs
from lockstep.settings import load_settings


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    settings = load_settings(
        database_url=args.url,
        env="test",
        log_format="console",
        log_level="WARNING",
        slow_query_ms=0,
        jobs_lease_seconds=args.lease,
        jobs_heartbeat_seconds=args.lease / 3,
        jobs_poll_seconds=args.poll,
        jobs_shutdown_seconds=5,
        sqlite_busy_timeout_ms=30_000,
    )
    database = Database(settings)
    jobs = Jobs(database, tasks)
    worker = jobs.worker(name=args.name, concurrency=args.concurrency, schedules=False)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.request_stop)
    try:
        await worker.start()
        print(f"ready {worker.worker_id}", flush=True)
        await worker.stop_requested()
        await worker.stop()
    finally:
        await database.dispose()


if __name__ == "__main__":
    asyncio.run(main())
