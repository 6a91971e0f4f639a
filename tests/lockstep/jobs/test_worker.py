"""Running jobs: handlers, polling, cancel/abort, snooze, backoff, results, progress,
timeouts and graceful shutdown, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import insert, text

from lockstep.db import Database
from lockstep.jobs import (
    Backoff,
    JobContext,
    JobFailedError,
    JobNotFoundError,
    JobProgress,
    Jobs,
    JobState,
    ResultUnavailableError,
    Snooze,
    TaskRegistry,
)

from .conftest import count_effects
from .fault_tasks import effects

RunWorker = Callable[..., Awaitable[Any]]


async def test_async_and_sync_handlers_with_polling_alone(
    jobs: Jobs,
    tasks: TaskRegistry,
    jobs_db: Database,
    make_database: Callable[..., Database],
    run_worker: RunWorker,
) -> None:
    """Requirement 11: async and sync handlers; polling alone is correct (no LISTEN, and
    the jobs come from another process's connection, so no local wake-up either)."""
    threads: list[int] = []

    @tasks.task(name="async_add")
    async def async_add(a: int, b: int) -> int:
        return a + b

    @tasks.task(name="sync_mul")
    def sync_mul(ctx: JobContext, a: int, b: int) -> int:
        threads.append(threading.get_ident())
        ctx.raise_if_aborted()
        return a * b

    await run_worker(listen=False)
    producer = Jobs(make_database(jobs_db.settings.database_url), tasks)
    first = await producer.enqueue(async_add, {"a": 2, "b": 3})
    second = await producer.enqueue("sync_mul", {"a": 4, "b": 5})
    async with asyncio.timeout(20):
        assert await producer.result(first or 0) == 5
        assert await producer.result(second or 0) == 20
    assert threads
    assert threads[0] != threading.get_ident()  # ran off the event loop


@pytest.mark.postgres
async def test_listen_notify_wakes_workers_of_other_processes(
    postgres_url: str,
    tasks: TaskRegistry,
    make_database: Callable[..., Database],
) -> None:
    """Requirement 11: LISTEN/NOTIFY only lowers latency; the worker is told on commit."""
    from .conftest import create_tables

    database = make_database(postgres_url)
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(create_tables)
    seen = asyncio.Event()

    @tasks.task(name="ping")
    async def ping() -> None:
        seen.set()

    jobs = Jobs(database, tasks)
    # A poll interval longer than the test's patience: only the notification can wake it.
    async with jobs.worker(poll_interval=30, lease=3) as worker:
        assert worker.listener is not None
        await worker.listener.wait_connected()
        producer = Jobs(make_database(postgres_url), tasks)
        await producer.enqueue(ping)
        async with asyncio.timeout(10):
            await seen.wait()


async def test_cancel_and_abort(jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker) -> None:
    """Requirement 8: a cancelled queued job never runs; an abort reaches the running
    handler (by polling, within one poll interval) and the job ends ``aborted``."""
    ran: list[str] = []
    started = asyncio.Event()
    interrupted = asyncio.Event()

    @tasks.task(name="never", queue="later")
    async def never() -> None:
        ran.append("never")

    @tasks.task(name="hang")
    async def hang() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            interrupted.set()
            raise

    queued = await jobs.enqueue(never)
    cancelled = await jobs.cancel(queued or 0)
    assert cancelled.state is JobState.CANCELLED
    await run_worker(listen=False, queues=["default", "later"])
    running = await jobs.enqueue(hang)
    async with asyncio.timeout(20):
        await started.wait()
        requested = await jobs.cancel(running or 0)
        assert requested.state is JobState.RUNNING
        assert requested.abort_requested
        await interrupted.wait()
        with pytest.raises(JobFailedError) as failed:
            await jobs.result(running or 0)
    assert failed.value.state == "aborted"
    assert ran == []
    assert (await jobs.get(queued or 0)).state is JobState.CANCELLED


async def test_abort_reaches_a_handler_while_draining(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """Requirement 8: an abort still reaches a running handler after a stop was requested
    (the worker is draining, waiting for its jobs to finish)."""
    started = asyncio.Event()

    @tasks.task(name="slow")
    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    worker = await run_worker(shutdown_timeout=60, listen=False)
    job_id = await jobs.enqueue(slow)
    async with asyncio.timeout(20):
        await started.wait()
        worker.request_stop()
        await jobs.cancel(job_id or 0)
        await worker.stop()
    assert (await jobs.get(job_id or 0)).state is JobState.ABORTED


async def test_final_states_stay_distinct(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """Requirement 8: succeeded / failed / cancelled / aborted are four different states."""
    started = asyncio.Event()

    @tasks.task(name="ok")
    async def ok() -> str:
        return "fine"

    @tasks.task(name="bad", max_attempts=1)
    async def bad() -> None:
        raise ValueError("broken input")

    @tasks.task(name="wait")
    async def wait() -> None:
        started.set()
        await asyncio.Event().wait()

    cancelled = await jobs.enqueue(ok, delay=3600)
    await jobs.cancel(cancelled or 0)
    await run_worker()
    ids = [await jobs.enqueue(ok), await jobs.enqueue(bad), await jobs.enqueue(wait)]
    async with asyncio.timeout(20):
        await started.wait()
        await jobs.cancel(ids[2] or 0)
        for job_id in ids:
            with pytest.raises(JobFailedError) if job_id != ids[0] else _nothing():
                await jobs.result(job_id or 0)
    states = {j.id: (j.state, j.reason) for j in await jobs.list_jobs()}
    assert states == {
        ids[0]: (JobState.SUCCEEDED, None),
        ids[1]: (JobState.FAILED, "error"),
        ids[2]: (JobState.ABORTED, "aborted"),
        cancelled: (JobState.CANCELLED, "cancelled"),
    }
    failed = await jobs.get(ids[1] or 0)
    assert failed.error == "ValueError: broken input"
    assert failed.traceback
    assert "broken input" in failed.traceback
    assert [e["attempt"] for e in failed.errors] == [1]


class _nothing:
    def __enter__(self) -> None: ...

    def __exit__(self, *_: object) -> None: ...


async def test_snooze_does_not_spend_an_attempt(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """Requirement 9: snooze reschedules without spending an attempt."""
    calls: list[int] = []

    @tasks.task(name="snoozy", max_attempts=1)
    async def snoozy(ctx: JobContext) -> int:
        calls.append(ctx.attempt)
        if len(calls) < 3:
            raise Snooze(0.01 if len(calls) == 1 else 0)
        return len(calls)

    await run_worker()
    job_id = await jobs.enqueue(snoozy)
    async with asyncio.timeout(20):
        assert await jobs.result(job_id or 0) == 3
    job = await jobs.get(job_id or 0)
    assert calls == [1, 1, 1]
    assert (job.attempt, job.snoozes, job.state) == (1, 2, JobState.SUCCEEDED)


def _seconds_between(later: dt.datetime, earlier_text: str) -> float:
    earlier = dt.datetime.fromisoformat(earlier_text)
    if earlier.tzinfo is None:
        earlier = earlier.replace(tzinfo=dt.UTC)
    return (later - earlier).total_seconds()


async def test_backoff_per_task_with_jitter_and_cap(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """Requirement 9: a failed attempt waits the task's own backoff (jittered, capped) by
    the database clock; without retries left the job fails."""
    failures = asyncio.Event()

    @tasks.task(name="slow_retry", max_attempts=3, backoff=Backoff(base=100, cap=105, jitter=0.1))
    async def slow_retry() -> None:
        failures.set()
        raise RuntimeError("upstream down")

    @tasks.task(name="fast_retry", max_attempts=3, backoff=Backoff(base=0))
    async def fast_retry() -> None:
        raise RuntimeError("always")

    await run_worker()
    slow = await jobs.enqueue(slow_retry)
    fast = await jobs.enqueue(fast_retry)
    async with asyncio.timeout(20):
        with pytest.raises(JobFailedError, match="always"):
            await jobs.result(fast or 0)
        await failures.wait()
        while True:
            finished = jobs.next_finish()
            if (await jobs.get(slow or 0)).state is JobState.SCHEDULED:
                break
            await finished.wait()
    job = await jobs.get(slow or 0)
    waited = _seconds_between(job.run_at, job.errors[-1]["at"])
    assert 90 - 0.01 <= waited <= 105 + 0.01  # 100 s ± 10 %, capped at 105
    assert (job.attempt, job.reason) == (1, "error")
    done = await jobs.get(fast or 0)
    assert (done.state, done.attempt, len(done.errors)) == (JobState.FAILED, 3, 3)


async def test_results_have_a_lifetime_and_never_hang(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database, run_worker: RunWorker
) -> None:
    """Requirement 10: results stored with a lifetime, fetched by job id; awaiting the
    result of a job whose result was not kept (or expired) raises at once."""
    gate = asyncio.Event()

    @tasks.task(name="kept", result_ttl=3600)
    async def kept(n: int) -> dict[str, int]:
        await gate.wait()
        return {"n": n}

    @tasks.task(name="dropped", result_ttl=0)
    async def dropped() -> str:
        return "gone"

    await run_worker()
    kept_id = await jobs.enqueue(kept, {"n": 7})
    dropped_id = await jobs.enqueue(dropped)
    async with asyncio.timeout(20):
        waiter = asyncio.create_task(jobs.result(kept_id or 0))
        gate.set()
        assert await waiter == {"n": 7}
        assert await jobs.result(kept_id or 0) == {"n": 7}  # fetched again by id
        with pytest.raises(ResultUnavailableError, match="not kept"):
            await jobs.result(dropped_id or 0)
    assert (await jobs.get(kept_id or 0)).has_result
    # The lifetime passes (moved by the database clock's standard: store an expiry behind).
    async with jobs_db.writer() as session:
        past = jobs.store.backend.bind_time(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        await session.execute(
            text("UPDATE lockstep_jobs SET result_expires_at = :t WHERE id = :id"),
            {"t": past, "id": kept_id},
        )
    with pytest.raises(ResultUnavailableError, match="expired"):
        await jobs.result(kept_id or 0)
    with pytest.raises(JobNotFoundError):
        await jobs.result(999_999)


async def test_progress_is_stored_and_published(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """Progress from inside a task: on the job row and passed to listeners (the hook the
    realtime layer subscribes to)."""
    reported = asyncio.Event()
    gate = asyncio.Event()
    seen: list[JobProgress] = []

    async def listener(progress: JobProgress) -> None:
        seen.append(progress)
        if progress.current == 3:
            reported.set()

    unsubscribe = jobs.on_progress(listener)

    @tasks.task(name="steps")
    def steps(ctx: JobContext) -> None:  # from a worker thread
        for i in range(1, 4):
            ctx.progress(i, total=3, message=f"step {i}")
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result()

    loop = asyncio.get_running_loop()
    await run_worker()
    job_id = await jobs.enqueue(steps)
    async with asyncio.timeout(20):
        await reported.wait()
        stored = await jobs.get(job_id or 0)
        assert stored.progress == {"current": 3, "total": 3, "message": "step 3"}
        assert stored.state is JobState.RUNNING
        gate.set()
        await jobs.result(job_id or 0)
    assert seen[-1].job_id == job_id
    assert seen[-1].message == "step 3"
    unsubscribe()


async def test_live_progress_listeners_hear_reports_before_they_are_stored(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """``on_progress(live=True)``: every report as it is made, even while the job holds the
    database's writer (an import on SQLite) and nothing can be stored."""
    heard = asyncio.Event()
    seen: list[float] = []

    async def listener(progress: JobProgress) -> None:
        seen.append(progress.current)
        if progress.current == 2:
            heard.set()

    unsubscribe = jobs.on_progress(listener, live=True)

    @tasks.task(name="holding")
    async def holding(ctx: JobContext) -> None:
        async with ctx.transaction():
            ctx.progress(1, total=2)
            ctx.progress(2, total=2)
            await heard.wait()  # heard while this transaction is still open

    await run_worker()
    job_id = await jobs.enqueue(holding)
    async with asyncio.timeout(20):
        await jobs.result(job_id or 0)
    assert seen == [1, 2]
    unsubscribe()


async def test_timeout_fails_the_attempt(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    @tasks.task(name="stuck", timeout=0.05, max_attempts=2, backoff=Backoff(base=0))
    async def stuck() -> None:
        await asyncio.Event().wait()

    await run_worker()
    job_id = await jobs.enqueue(stuck)
    async with asyncio.timeout(20):
        with pytest.raises(JobFailedError):
            await jobs.result(job_id or 0)
    job = await jobs.get(job_id or 0)
    assert (job.state, job.reason, job.attempt) == (JobState.FAILED, "timeout", 2)


async def test_graceful_shutdown_finishes_or_releases(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker
) -> None:
    """Shutdown: running jobs get ``shutdown_timeout`` to finish; the rest are released
    (queued again, the attempt not spent)."""
    started = asyncio.Event()
    gate = asyncio.Event()

    @tasks.task(name="finishes")
    async def finishes() -> str:
        started.set()
        await gate.wait()
        return "done"

    @tasks.task(name="stuck", queue="stuck")
    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    worker = await run_worker(shutdown_timeout=60)
    job_id = await jobs.enqueue(finishes)
    async with asyncio.timeout(20):
        await started.wait()
        worker.request_stop()
        gate.set()
        await worker.stop()
    assert (await jobs.get(job_id or 0)).state is JobState.SUCCEEDED

    started.clear()
    worker = await run_worker(shutdown_timeout=0.01, queues=["stuck"])
    stuck_id = await jobs.enqueue(stuck)
    async with asyncio.timeout(20):
        await started.wait()
        await worker.stop()
    job = await jobs.get(stuck_id or 0)
    assert (job.state, job.attempt) == (JobState.QUEUED, 0)


async def test_effects_in_the_fenced_transaction(
    jobs: Jobs, tasks: TaskRegistry, jobs_db: Database, run_worker: RunWorker
) -> None:
    """``ctx.transaction()`` commits the handler's writes together with the completion."""

    @tasks.task(name="effect")
    async def effect(ctx: JobContext) -> str:
        async with ctx.transaction() as session:
            await session.execute(insert(effects).values(job_id=ctx.job_id, label="x"))
        return "stored"

    await run_worker()
    job_id = await jobs.enqueue(effect)
    async with asyncio.timeout(20):
        assert await jobs.result(job_id or 0) == "stored"
    assert await count_effects(jobs_db, job_id) == 1
