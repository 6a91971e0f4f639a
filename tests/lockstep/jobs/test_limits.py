"""Concurrency and rate limits across workers, and paused queues (requirement 12), on
SQLite and PostgreSQL. The limits live in the database, so three workers in one test
process are held to them exactly as three processes would be."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from lockstep.db import Database
from lockstep.jobs import Jobs, JobState, KeyLimits, Rate, TaskRegistry

RunWorker = Callable[..., Awaitable[Any]]


class ClaimWatch:
    """Counts claim attempts by every worker, so a test can wait until they all had their
    chance to (wrongly) start more jobs, without sleeping."""

    def __init__(self, jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self._changed = asyncio.Event()
        original = jobs.store.claim

        async def claim(*args: Any, **kwargs: Any) -> Any:
            try:
                return await original(*args, **kwargs)
            finally:
                self.calls += 1
                event, self._changed = self._changed, asyncio.Event()
                event.set()

        monkeypatch.setattr(jobs.store, "claim", claim)

    async def more(self, n: int) -> None:
        target = self.calls + n
        while self.calls < target:
            await self._changed.wait()


class Tracker:
    """Running handlers per key, the maximum seen, and a gate that holds them."""

    def __init__(self) -> None:
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.gate = asyncio.Event()
        self._changed = asyncio.Event()

    async def run(self, key: str) -> None:
        self.active[key] += 1
        self.active["*"] += 1
        for k in (key, "*"):
            self.peak[k] = max(self.peak[k], self.active[k])
        self._notify()
        try:
            await self.gate.wait()
        finally:
            self.active[key] -= 1
            self.active["*"] -= 1

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def running(self, n: int) -> None:
        while self.active["*"] < n:
            await self._changed.wait()


async def running_in_db(database: Database) -> int:
    async with database.reader() as session:
        sql = "SELECT count(*) FROM lockstep_jobs WHERE state = 'running'"
        return int(await session.scalar(text(sql)) or 0)


async def test_queue_concurrency_limit_holds_across_workers(
    jobs: Jobs,
    tasks: TaskRegistry,
    jobs_db: Database,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requirement 12: 3 workers, global limit 2 → never more than 2 running."""
    tracker = Tracker()
    watch = ClaimWatch(jobs, monkeypatch)
    tasks.queue("limited", concurrency=2)

    @tasks.task(name="held", queue="limited")
    async def held(n: int) -> None:
        await tracker.run("q")

    for _ in range(3):
        await run_worker(queues={"limited": 5})
    ids = [await jobs.enqueue(held, {"n": n}) for n in range(8)]
    async with asyncio.timeout(30):
        await tracker.running(2)
        await watch.more(12)  # every worker tried again, with free slots of its own
        assert tracker.active["*"] == 2
        assert await running_in_db(jobs_db) == 2
        tracker.gate.set()
        for job_id in ids:
            await jobs.result(job_id or 0)
    assert tracker.peak["*"] == 2


async def test_per_key_concurrency_holds_across_workers(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requirement 12: at most one running job per customer, whichever worker runs it."""
    tracker = Tracker()
    watch = ClaimWatch(jobs, monkeypatch)

    @tasks.task(name="sync", limit_key="customer:{customer}", key_limits=KeyLimits(concurrency=1))
    async def sync(customer: str, n: int) -> None:
        await tracker.run(customer)

    for _ in range(3):
        await run_worker()
    ids = [await jobs.enqueue(sync, {"customer": c, "n": n}) for n in range(3) for c in "ab"]
    async with asyncio.timeout(30):
        await tracker.running(2)
        await watch.more(12)
        assert (tracker.active["a"], tracker.active["b"]) == (1, 1)
        tracker.gate.set()
        for job_id in ids:
            await jobs.result(job_id or 0)
    assert (tracker.peak["a"], tracker.peak["b"]) == (1, 1)


async def test_rate_limits_per_queue_and_per_key(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requirement 12: starts per period, per queue and per key, across workers."""
    watch = ClaimWatch(jobs, monkeypatch)
    tasks.queue("metered", rate=Rate(3, per=3600))
    done = Counter[str]()
    changed = asyncio.Event()

    @tasks.task(name="call", queue="metered")
    async def call(n: int) -> None:
        done["queue"] += 1
        changed.set()

    @tasks.task(name="mail", limit_key="{to}", key_limits=KeyLimits(rate=Rate(2, per=3600)))
    async def mail(to: str, n: int) -> None:
        done[to] += 1
        changed.set()

    for _ in range(3):
        await run_worker(queues=["metered", "default"])
    for n in range(6):
        await jobs.enqueue(call, {"n": n})
        await jobs.enqueue(mail, {"to": "x" if n % 2 else "y", "n": n})
    async with asyncio.timeout(30):
        while sum(done.values()) < 7:
            changed.clear()
            await changed.wait()
        await watch.more(24)
    assert done == {"queue": 3, "x": 2, "y": 2}
    stats = {s.queue: s for s in await jobs.stats()}
    assert (stats["metered"].queued, stats["default"].queued) == (3, 2)


async def test_paused_queues_are_not_claimed(
    jobs: Jobs, tasks: TaskRegistry, run_worker: RunWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requirement 12: a paused queue is skipped by every worker until resumed."""
    watch = ClaimWatch(jobs, monkeypatch)

    @tasks.task(name="work")
    async def work() -> str:
        return "ran"

    await jobs.pause("default")
    await run_worker()
    job_id = await jobs.enqueue(work) or 0
    async with asyncio.timeout(30):
        await watch.more(5)
        assert (await jobs.get(job_id)).state is JobState.QUEUED
        assert [s.paused for s in await jobs.stats()] == [True]
        await jobs.resume("default")
        assert await jobs.result(job_id) == "ran"
