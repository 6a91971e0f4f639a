"""Job queue throughput and latency: lockstep (PostgreSQL, SQLite) against procrastinate
and pgqueuer on the same throwaway PostgreSQL.

Each system gets a fresh database on one server started for the run, a no-op async handler
and the same shape of work:

* throughput: enqueue N jobs in batches of 500, then run one worker until all of them are
  done; jobs/s = N / (enqueue time + processing time). Processing for lockstep ends when
  ``Worker.stop()`` returns, i.e. every completion is written. The systems take turns for
  ``--rounds`` rounds (a fresh database each time) and the median round is reported, so
  noise from other work on the machine hits them alike.
* latency: enqueue one job, wait for its handler to start, repeat; the p50 / p95 of the
  time from calling enqueue to the handler starting (same clock, one process). For
  lockstep the enqueuer uses its own connection pool, so on PostgreSQL the wake-up comes
  by LISTEN/NOTIFY (the path another process would see); SQLite has no cross-process
  channel, so its number is the embedded mode's in-process wake-up.

Targets from the jobs issue: >= 10x procrastinate and >= 1x pgqueuer jobs/s on PostgreSQL,
>= 1,000 jobs/s on SQLite, p50 < 10 ms with LISTEN/NOTIFY.

    .venv/bin/python bench/jobs.py [--jobs 20000] [--procrastinate-jobs 2000] [--rounds 5]
                                   [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from lockstep.db import Database
from lockstep.jobs import Jobs, NewJob, TaskRegistry, ensure_jobs_tables
from lockstep.settings import load_settings
from lockstep.testing import PostgresServer

BATCH = 500
SLOTS = 100  # concurrent jobs per worker, for every system
TIME_LIMIT = 120.0
LOCKSTEP_PG, LOCKSTEP_SQLITE = "lockstep (PostgreSQL)", "lockstep (SQLite)"
PROCRASTINATE, PGQUEUER = "procrastinate", "pgqueuer"


@dataclass
class Result:
    system: str
    rounds: list[tuple[int, float, float]] = field(default_factory=list)  # jobs, enq s, proc s
    latencies_ms: list[float] = field(default_factory=list)

    def _median(self, rate: Callable[[tuple[int, float, float]], float]) -> float:
        return statistics.median(rate(r) for r in self.rounds)

    @property
    def jobs(self) -> int:
        return self.rounds[0][0]

    @property
    def enqueue_rate(self) -> float:
        return self._median(lambda r: r[0] / r[1])

    @property
    def process_rate(self) -> float:
        return self._median(lambda r: r[0] / r[2])

    @property
    def throughput(self) -> float:
        return self._median(lambda r: r[0] / (r[1] + r[2]))

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Counter:
    """Counts handler calls; ``done`` is set at ``target``; ``started`` stamps starts."""

    def __init__(self, target: int = 0) -> None:
        self.count = 0
        self.target = target
        self.done = asyncio.Event()
        self.started = asyncio.Event()
        self.started_at = 0.0

    def hit(self) -> None:
        self.started_at = time.perf_counter()
        self.count += 1
        self.started.set()
        if self.count >= self.target:
            self.done.set()


async def ping_pong(
    samples: int, enqueue: Callable[[], Awaitable[Any]], counter: Counter
) -> list[float]:
    latencies = []
    for _ in range(samples):
        counter.started.clear()
        began = time.perf_counter()
        await enqueue()
        await asyncio.wait_for(counter.started.wait(), 30)
        latencies.append((counter.started_at - began) * 1000)
    return latencies


# -- lockstep ---------------------------------------------------------------------------------


async def lockstep_run(url: str, jobs_n: int, samples: int) -> tuple[float, float, list[float]]:
    """(enqueue s, process s, latencies) for one fresh database."""
    settings = load_settings(
        database_url=url, env="test", log_format="console", log_level="WARNING", slow_query_ms=0
    )
    database, producer_db = Database(settings), Database(settings)
    counter = Counter(jobs_n)
    latency_counter = Counter(samples)
    tasks = TaskRegistry()

    @tasks.task(name="noop", result_ttl=0)
    async def noop(n: int) -> None:
        counter.hit()

    @tasks.task(name="ping", result_ttl=0)
    async def ping() -> None:
        latency_counter.hit()

    try:
        async with database.writer_engine.begin() as conn:
            await conn.run_sync(ensure_jobs_tables)
        jobs = Jobs(database, tasks)
        producer = Jobs(producer_db, tasks)  # another pool: no in-process wake-up shortcut
        batches = [
            [NewJob(noop, {"n": i}) for i in range(start, min(start + BATCH, jobs_n))]
            for start in range(0, jobs_n, BATCH)
        ]
        began = time.perf_counter()
        for batch in batches:
            await producer.enqueue_many(batch)
        enqueued = time.perf_counter()
        worker = jobs.worker(queues={"default": SLOTS}, poll_interval=1.0, schedules=False)
        await worker.start()
        await asyncio.wait_for(counter.done.wait(), TIME_LIMIT)
        await worker.stop()
        processed = time.perf_counter()
        latencies: list[float] = []
        if samples:
            async with jobs.worker(queues={"default": SLOTS}, poll_interval=1.0, schedules=False):
                sender = producer if database.backend == "postgresql" else jobs
                latencies = await ping_pong(samples, lambda: sender.enqueue(ping), latency_counter)
        return enqueued - began, processed - enqueued, latencies
    finally:
        await database.dispose()
        await producer_db.dispose()


# -- procrastinate ------------------------------------------------------------------------------


async def procrastinate_run(
    dsn: str, jobs_n: int, samples: int
) -> tuple[float, float, list[float]]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    counter = Counter(jobs_n)
    latency_counter = Counter(samples)

    @app.task(queue="bench", name="noop")
    async def noop(n: int) -> None:
        counter.hit()

    @app.task(queue="ping", name="ping")
    async def ping() -> None:
        latency_counter.hit()

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        began = time.perf_counter()
        for start in range(0, jobs_n, BATCH):
            await noop.batch_defer_async(
                *({"n": i} for i in range(start, min(start + BATCH, jobs_n)))
            )
        enqueued = time.perf_counter()
        await asyncio.wait_for(
            app.run_worker_async(
                queues=["bench"],
                concurrency=SLOTS,
                wait=False,
                install_signal_handlers=False,
                fetch_job_polling_interval=1.0,
            ),
            TIME_LIMIT,
        )
        processed = time.perf_counter()
        latencies: list[float] = []
        if samples:
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=["ping"], concurrency=SLOTS, install_signal_handlers=False
                )
            )
            await asyncio.sleep(0.5)  # let the worker start listening
            latencies = await ping_pong(samples, lambda: ping.defer_async(), latency_counter)
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    return enqueued - began, processed - enqueued, latencies


# -- pgqueuer -------------------------------------------------------------------------------------


async def pgqueuer_run(dsn: str, jobs_n: int, samples: int) -> tuple[float, float, list[float]]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.models import Job
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(connection))
    await queries.install()
    counter = Counter(jobs_n)
    qm = QueueManager(queries)

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        counter.hit()

    began = time.perf_counter()
    for start in range(0, jobs_n, BATCH):
        size = min(BATCH, jobs_n - start)
        await queries.enqueue(["noop"] * size, [b"x"] * size, [0] * size)
    enqueued = time.perf_counter()
    await asyncio.wait_for(
        qm.run(batch_size=SLOTS // 2, mode=QueueExecutionMode.drain, max_concurrent_tasks=SLOTS),
        TIME_LIMIT,
    )
    processed = time.perf_counter()
    await connection.close()
    latencies: list[float] = []
    if samples:
        connection = await asyncpg.connect(dsn)
        producer_connection = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(connection)))
        producer = Queries(AsyncpgDriver(producer_connection))
        latency_counter = Counter(samples)

        @qm.entrypoint("ping")
        async def ping(job: Job) -> None:
            latency_counter.hit()

        worker = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=30)))
        await asyncio.sleep(0.5)  # let the worker start listening
        latencies = await ping_pong(
            samples, lambda: producer.enqueue("ping", None), latency_counter
        )
        qm.shutdown.set()
        await asyncio.gather(worker, return_exceptions=True)
        await connection.close()
        await producer_connection.close()
    return enqueued - began, processed - enqueued, latencies


# -- report ---------------------------------------------------------------------------------------


def report(results: dict[str, Result]) -> None:
    print(
        f"{'system':<24}{'jobs':>7}{'enqueue/s':>11}{'process/s':>11}"
        f"{'enq+proc/s':>12}{'p50 ms':>9}{'p95 ms':>9}"
    )
    for r in results.values():
        print(
            f"{r.system:<24}{r.jobs:>7}{r.enqueue_rate:>11,.0f}{r.process_rate:>11,.0f}"
            f"{r.throughput:>12,.0f}{r.percentile(0.5):>9.2f}{r.percentile(0.95):>9.2f}"
        )
    pg, sqlite = results[LOCKSTEP_PG], results[LOCKSTEP_SQLITE]
    checks = [
        ("vs procrastinate (target >= 10x)", pg.throughput / results[PROCRASTINATE].throughput, 10),
        ("vs pgqueuer (target >= 1x)", pg.throughput / results[PGQUEUER].throughput, 1),
    ]
    print()
    for label, ratio, target in checks:
        verdict = "met" if ratio >= target else "NOT met"
        print(f"lockstep on PostgreSQL {label}: {ratio:.1f}x  [{verdict}]")
    print(
        f"lockstep on SQLite: {sqlite.throughput:,.0f} jobs/s (target >= 1,000) "
        f"[{'met' if sqlite.throughput >= 1000 else 'NOT met'}]"
    )
    p50 = pg.percentile(0.5)
    print(
        f"lockstep on PostgreSQL, p50 enqueue-to-start by LISTEN/NOTIFY: {p50:.2f} ms "
        f"(target < 10 ms) [{'met' if p50 < 10 else 'NOT met'}]"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--procrastinate-jobs", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--procrastinate-samples", type=int, default=40)
    args = parser.parse_args()
    results = {
        name: Result(name) for name in (LOCKSTEP_PG, LOCKSTEP_SQLITE, PROCRASTINATE, PGQUEUER)
    }
    with PostgresServer() as server, tempfile.TemporaryDirectory() as tmp:
        print(
            f"PostgreSQL on port {server.port}; {args.jobs} jobs per round "
            f"({args.procrastinate_jobs} for procrastinate), {SLOTS} slots, "
            f"{args.rounds} interleaved rounds (median shown)\n"
        )
        for n in range(args.rounds):
            last = n == args.rounds - 1  # latency is sampled once, in the last round
            runs: list[tuple[str, Awaitable[tuple[float, float, list[float]]], int]] = [
                (
                    LOCKSTEP_PG,
                    lockstep_run(
                        server.create_database(f"lockstep_{n}"), args.jobs, args.samples * last
                    ),
                    args.jobs,
                ),
                (
                    PGQUEUER,
                    pgqueuer_run(
                        server_dsn(server, f"pgqueuer_{n}"), args.jobs, args.samples * last
                    ),
                    args.jobs,
                ),
                (
                    LOCKSTEP_SQLITE,
                    lockstep_run(
                        f"sqlite+aiosqlite:///{Path(tmp) / f'bench_{n}.db'}",
                        args.jobs,
                        args.samples * last,
                    ),
                    args.jobs,
                ),
                (
                    PROCRASTINATE,
                    procrastinate_run(
                        server_dsn(server, f"procrastinate_{n}"),
                        args.procrastinate_jobs,
                        args.procrastinate_samples * last,
                    ),
                    args.procrastinate_jobs,
                ),
            ]
            for name, run, jobs_n in runs:
                enqueue_s, process_s, latencies = await run
                results[name].rounds.append((jobs_n, enqueue_s, process_s))
                results[name].latencies_ms += latencies
                print(f"round {n + 1}: {name:<24} {jobs_n / (enqueue_s + process_s):>9,.0f} jobs/s")
    print()
    report(results)


def server_dsn(server: PostgresServer, name: str) -> str:
    server.create_database(name)
    return server.dsn(name)


if __name__ == "__main__":
    asyncio.run(main())
