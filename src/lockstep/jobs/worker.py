"""The worker: claims jobs of its queues into per-queue slots, runs them (see
``execution.py``), records how each attempt ended (batched, fenced), and runs the lease
keeping (``leases.py``), progress (``progress.py``) and shared upkeep (``upkeep.py``).

A worker that dies stops renewing its leases and any worker's rescuer hands its jobs back;
``worker_id`` is ``name:pid:random``, new for every run, so a restart under the same name
is a different fence holder. :meth:`Worker.stop` stops claiming, lets running jobs finish
for ``shutdown_timeout`` seconds, then releases the rest (attempt not spent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from lockstep.exceptions import ConfigurationError
from lockstep.jobs.attempt import Attempt
from lockstep.jobs.backends import Listener
from lockstep.jobs.batcher import Batcher
from lockstep.jobs.context import JobContext
from lockstep.jobs.execution import Execution
from lockstep.jobs.job import ClaimedJob
from lockstep.jobs.leases import LeaseKeeper
from lockstep.jobs.limits import KeyLimits
from lockstep.jobs.outcome import Outcome
from lockstep.jobs.pool import ProcessPool
from lockstep.jobs.progress import ProgressReporter
from lockstep.jobs.store import JobStore
from lockstep.jobs.upkeep import Upkeep

if TYPE_CHECKING:
    from lockstep.jobs.runtime import Jobs

R = TypeVar("R")
log = structlog.get_logger("lockstep.jobs")

BATCH_WINDOW = 0.005  # seconds a busy worker lets freed slots gather before claiming


class Worker:
    """Runs jobs of ``queues`` (name → slots, or names with ``concurrency`` slots each;
    default: every queue of the registry). ``state`` is handed to handlers as ``ctx.state``.

    Settings supply the defaults of ``lease``, ``heartbeat``, ``poll_interval``,
    ``shutdown_timeout`` and ``process_workers``. Raises :class:`ConfigurationError` for a
    heartbeat above a third of the lease or no queue to serve.
    """

    def __init__(
        self,
        jobs: Jobs,
        *,
        queues: Mapping[str, int] | Iterable[str] | None = None,
        concurrency: int | None = None,
        name: str | None = None,
        state: Any = None,
        schedules: bool = True,
        listen: bool | None = None,
        lease: float | None = None,
        heartbeat: float | None = None,
        poll_interval: float | None = None,
        shutdown_timeout: float | None = None,
        process_workers: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        settings = jobs.settings
        self.jobs = jobs
        self.store: JobStore = jobs.store
        self.registry = jobs.registry
        self.state = state
        self.lease = _or(lease, settings.jobs_lease_seconds)
        self.heartbeat = _or(heartbeat, min(settings.jobs_heartbeat_seconds, self.lease / 3))
        if not 0 < self.heartbeat <= self.lease / 3 + 1e-9:
            raise ConfigurationError(
                f"heartbeat ({self.heartbeat}s) must be > 0 and at most a third of the lease "
                f"({self.lease}s), or a slow heartbeat would let a live lease expire"
            )
        self.poll_interval = _or(poll_interval, settings.jobs_poll_seconds)
        self.shutdown_timeout = _or(shutdown_timeout, settings.jobs_shutdown_seconds)
        self.listen = settings.jobs_listen if listen is None else listen
        self.run_schedules = schedules
        slots = concurrency if concurrency is not None else settings.jobs_concurrency
        self.queues = _queue_slots(self.registry.queues if queues is None else queues, slots)
        host = name or socket.gethostname()
        self.worker_id = f"{host}:{os.getpid()}:{secrets.token_hex(3)}"
        rng = rng or random.Random()
        self._processes = ProcessPool(
            process_workers
            if process_workers is not None
            else settings.jobs_process_workers or (os.cpu_count() or 1)
        )
        self._threads = ThreadPoolExecutor(
            max_workers=sum(self.queues.values()), thread_name_prefix="lockstep-job"
        )
        self._execution = Execution(
            self.registry,
            default_result_ttl=settings.jobs_result_ttl_seconds,
            threads=self._threads,
            processes=self._processes,
            rng=rng,
        )
        self._running: dict[int, Attempt] = {}
        self._count: dict[str, int] = dict.fromkeys(self.queues, 0)
        self._attention: dict[str, asyncio.Event] = {}
        self._starved: dict[str, bool] = dict.fromkeys(self.queues, False)
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._finisher: Batcher[tuple[int, int, Outcome], bool] = Batcher(
            self._flush_finishes,
            name="finish",
            give_up_after=max(self.lease * 2, 10.0),
        )
        self._progress = ProgressReporter(jobs, self.store, self.worker_id)
        self._leases = LeaseKeeper(
            self.store,
            self.worker_id,
            self._running,
            lease=self.lease,
            heartbeat=self.heartbeat,
            poll_interval=self.poll_interval,
            wake=self.wake,
        )
        self._upkeep = Upkeep(
            jobs,
            poll_interval=self.poll_interval,
            schedules=schedules,
            wake=self.wake,
            wake_queues=self.wake_queues,
            rng=rng,
        )
        self._key_limits: dict[str, KeyLimits] = {
            t.name: t.key_limits for t in self.registry if t.key_limits is not None
        }
        self.listener: Listener | None = None
        """The wake-up subscription while running (PostgreSQL with ``listen``), else None."""

    async def start(self) -> None:
        """Run in the background; returns once the worker is claiming."""
        if self._run_task is None:
            self._run_task = asyncio.create_task(self.run(), name=f"worker {self.worker_id}")
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait([started, self._run_task], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._run_task.done():
            self._run_task.result()  # raise what stopped it

    def request_stop(self) -> None:
        """Begin a graceful stop (safe to call from a signal handler)."""
        self._stopping.set()
        for event in self._attention.values():
            event.set()

    async def stop_requested(self) -> None:
        """Wait until a stop is requested (by :meth:`request_stop`, e.g. from SIGTERM)."""
        await self._stopping.wait()

    async def stop(self) -> None:
        """Stop claiming, finish or release running jobs, and return when done."""
        self.request_stop()
        if self._run_task is not None:
            await self._run_task

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Work until :meth:`stop` / :meth:`request_stop`; drains before returning."""
        self._progress.bind(asyncio.get_running_loop())
        self._attention = {queue: asyncio.Event() for queue in self.queues}
        listener = self.listener = (
            self.store.backend.listener(self.jobs.database, self.wake) if self.listen else None
        )
        self.jobs.attach(self)
        fetchers: list[asyncio.Task[None]] = []
        background: list[asyncio.Task[None]] = []
        try:
            if listener is not None:
                await listener.start()
            fetchers = [
                asyncio.create_task(self._fetch(queue, slots), name=f"fetch {queue}")
                for queue, slots in self.queues.items()
            ]
            background = [
                asyncio.create_task(self._leases.heartbeats(), name="heartbeats"),
                asyncio.create_task(self._leases.watch_aborts(), name="aborts"),
                asyncio.create_task(self._upkeep.run(), name="upkeep"),
                asyncio.create_task(self._progress.run(), name="progress"),
            ]
            self._started.set()
            log.info("jobs_worker_started", worker=self.worker_id, queues=self.queues)
            if self._stopping.is_set():
                for event in self._attention.values():
                    event.set()
            await self._stopping.wait()
        finally:
            await _cancel(fetchers)
            await self._drain()
            await self._finisher.close()
            await _cancel(background)
            await self._progress.write()
            if listener is not None:
                await listener.stop()
            self.jobs.detach(self)
            self._threads.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(self._processes.shutdown)
            log.info("jobs_worker_stopped", worker=self.worker_id)

    async def _drain(self) -> None:
        runners = [a.runner for a in self._running.values() if a.runner is not None]
        if not runners:
            return
        log.info("jobs_worker_draining", worker=self.worker_id, running=len(runners))
        _, pending = await asyncio.wait(runners, timeout=self.shutdown_timeout)
        if pending:
            for attempt in list(self._running.values()):
                attempt.stop("shutdown")
            await asyncio.wait(pending, timeout=max(self.lease, 5.0))

    def wake(self, payload: str) -> None:
        """Handle a wake-up: ``q:<queue>``, ``*`` (every queue) or ``a:<job id>`` (abort)."""
        if payload == "*":
            for event in self._attention.values():
                event.set()
        elif payload.startswith("q:"):
            queue_event = self._attention.get(payload[2:])
            if queue_event is not None:
                queue_event.set()
        elif payload.startswith("a:") and payload[2:].isdigit():
            attempt = self._running.get(int(payload[2:]))
            if attempt is not None and not attempt.finishing:
                attempt.stop("aborted")

    def wake_queues(self, queues: Iterable[str]) -> None:
        for queue in queues:
            self.wake(f"q:{queue}")

    async def _fetch(self, queue: str, slots: int) -> None:
        attention = self._attention[queue]
        limited = self.registry.is_limited(queue)
        queue_limits = self.registry.queue_limits(queue) if limited else None
        key_limits = self._key_limits if limited else None
        failures = 0
        saturated = False  # the last claim got all it asked for: more are probably waiting
        batch = max(1, slots // 2)
        while not self._stopping.is_set():
            free = slots - self._count[queue]
            if free <= 0:
                self._starved[queue] = True
                attention.clear()
                await attention.wait()
                continue
            if saturated and free < batch:
                free = await self._gather_slots(queue, slots, batch)
            self._starved[queue] = limited
            attention.clear()
            try:
                claimed = await self.store.claim(
                    queue,
                    free,
                    self.worker_id,
                    self.lease,
                    queue_limits=queue_limits,
                    key_limits=key_limits,
                )
            except Exception as exc:  # the database is away: keep trying, slower
                failures += 1
                log.warning("jobs_claim_failed", queue=queue, error=repr(exc))
                await _wait(self._stopping, min(self.poll_interval * failures, 5.0))
                continue
            failures = 0
            saturated = len(claimed) == free
            for job in claimed:
                self._start(job)
            if len(claimed) < free:
                await _wait(attention, self.poll_interval)

    async def _gather_slots(self, queue: str, slots: int, batch: int) -> int:
        """Let freed slots gather for a moment (a busy queue), so one claim takes many jobs
        instead of one round trip per finished job; returns the free slots."""
        attention, self._starved[queue] = self._attention[queue], True
        deadline = time.monotonic() + min(BATCH_WINDOW, self.poll_interval)
        while slots - self._count[queue] < batch and not self._stopping.is_set():
            attention.clear()
            if (left := deadline - time.monotonic()) <= 0:
                break
            await _wait(attention, left)
        return slots - self._count[queue]

    def _start(self, job: ClaimedJob) -> None:
        task = self.registry.get(job.task) if job.task in self.registry else None
        keeps = task is not None and self._execution.result_ttl(task) > 0
        context = JobContext(job, self, self.jobs.database, self.state, keeps_result=keeps)
        attempt = Attempt(job, context)
        self._running[job.id] = attempt
        self._count[job.queue] = self._count.get(job.queue, 0) + 1
        attempt.runner = asyncio.create_task(self._execute(attempt), name=f"job {job.id}")

    async def _execute(self, attempt: Attempt) -> None:
        job = attempt.job
        metrics = self.jobs.metrics.of(job.queue, job.task)
        metrics.wait_time.observe(job.wait_seconds)
        began = time.perf_counter()
        try:
            outcome = await self._execution.outcome(attempt)
            if outcome is None:
                log.warning("job_lease_lost", job=job.id, task=job.task, attempt=job.attempt)
                return
            attempt.finishing = True
            elapsed = time.perf_counter() - began
            # The handler is done: its slot may take the next job while the outcome is being
            # written (claims overlap finishes). The row stays "running" until then, so
            # limits counted in the database stay conservative.
            self._free_slot(attempt)
            await self.flush_progress(job)
            if outcome.kind == "result" and outcome.result is None:
                accepted = True  # completed in the handler's transaction; nothing to store
            else:
                accepted = await self._finisher.submit((job.id, job.attempt, outcome))
            metrics.record(outcome.kind, elapsed, accepted=accepted)
            if outcome.kind in ("retry", "failed"):
                log.warning(
                    "job_attempt_failed",
                    job=job.id,
                    task=job.task,
                    attempt=job.attempt,
                    final=outcome.kind == "failed",
                    error=outcome.error,
                )
            if not accepted:
                log.warning("job_completion_fenced", job=job.id, attempt=job.attempt)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job_finish_failed", job=job.id, attempt=job.attempt)
        finally:
            self._free_slot(attempt)
            self._running.pop(job.id, None)
            self._progress.forget(job)
            self.jobs.job_finished()

    def _free_slot(self, attempt: Attempt) -> None:
        if attempt.slot_freed:
            return
        attempt.slot_freed = True
        queue = attempt.job.queue
        self._count[queue] -= 1
        if self._starved.get(queue):
            self._attention[queue].set()

    async def _flush_finishes(self, items: list[tuple[int, int, Outcome]]) -> list[bool]:
        accepted = await self.store.finish(self.worker_id, items)
        return [job_id in accepted for job_id, _, _ in items]

    def report_progress(self, job: ClaimedJob, payload: dict[str, Any]) -> None:
        self._progress.report(job, payload)

    async def flush_progress(self, job: ClaimedJob) -> None:
        await self._progress.flush(job)

    def live_progress(self, job_id: int, attempt: int) -> dict[str, Any] | None:
        """The latest progress reported by attempt ``attempt`` of job ``job_id`` if it runs
        in this worker (it may not be stored yet)."""
        found = self._progress.latest.get(job_id)
        return found[1] if found is not None and found[0] == attempt else None

    async def run_in_process(self, fn: Callable[..., R], *args: Any) -> R:
        return await self._processes.run(fn, *args)


def _or(value: float | None, default: float) -> float:
    return float(value if value is not None else default)


def _queue_slots(queues: Mapping[str, int] | Iterable[str], slots: int) -> dict[str, int]:
    resolved = (
        {str(q): int(n) for q, n in queues.items()}
        if isinstance(queues, Mapping)
        else {str(q): slots for q in queues}
    )
    if not resolved or any(n < 1 for n in resolved.values()):
        raise ConfigurationError("a worker needs at least one queue with >= 1 slot")
    return resolved


async def _wait(event: asyncio.Event, within: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await event.wait()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
