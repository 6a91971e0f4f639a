"""Running one attempt's handler (async, in a thread, or in the process pool) and turning
how it ended into an :class:`Outcome`: a result, a snooze, a retry with backoff, a final
failure, an abort."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from lockstep.jobs.attempt import Attempt, stopped_outcome
from lockstep.jobs.context import JobAborted, JobContext, Snooze
from lockstep.jobs.job import ClaimedJob
from lockstep.jobs.outcome import Outcome, OutcomeKind
from lockstep.jobs.pool import ProcessPool, call_by_reference
from lockstep.jobs.task import Task, TaskRegistry


class _TimedOut(Exception):
    """The task's timeout expired (as opposed to a TimeoutError raised by the handler)."""


class Execution:
    """Runs handlers of ``registry`` for one worker."""

    def __init__(
        self,
        registry: TaskRegistry,
        *,
        default_result_ttl: float,
        threads: ThreadPoolExecutor,
        processes: ProcessPool,
        rng: random.Random,
    ) -> None:
        self.registry = registry
        self.default_result_ttl = default_result_ttl
        self.threads = threads
        self.processes = processes
        self.rng = rng

    def result_ttl(self, task: Task) -> float:
        return task.result_ttl if task.result_ttl is not None else self.default_result_ttl

    async def outcome(self, attempt: Attempt) -> Outcome | None:
        """Run the attempt's handler in the current task; None when its lease was lost.

        The current task is the one :meth:`Attempt.stop` cancels; that cancellation is
        absorbed here and recorded, any other propagates.
        """
        job = attempt.job
        try:
            task = self.registry.get(job.task)
        except Exception as exc:  # enqueued by newer code: retried, maybe elsewhere
            return self.failure(None, job, exc, "unknown_task")
        if attempt.stop_reason is not None:  # stopped before it could start
            return stopped_outcome(attempt.stop_reason)
        current = asyncio.current_task()
        assert current is not None
        attempt.handler = current
        try:
            result = await self._call(task, attempt.ctx, job.args)
        except asyncio.CancelledError:
            if attempt.stop_reason is None or current.uncancel() > 0:
                raise
            return stopped_outcome(attempt.stop_reason)
        except Snooze as snooze:
            return Outcome("snoozed", delay=snooze.delay)
        except JobAborted:
            return Outcome("aborted")
        except _TimedOut as exc:
            return self.failure(task, job, exc.__cause__ or exc, "timeout")
        except Exception as exc:
            return self.failure(task, job, exc, "error")
        ttl = self.result_ttl(task)
        try:
            encoded = orjson.dumps(result).decode() if ttl > 0 else None
        except TypeError as exc:
            return Outcome.failure(
                final=True,
                reason="bad_result",
                error=f"the handler's return value is not JSON: {exc}",
                traceback=None,
                delay=0,
            )
        kind: OutcomeKind = "result" if attempt.ctx.completed else "succeeded"
        return Outcome(kind, result=encoded, result_ttl=float(ttl))

    def failure(
        self, task: Task | None, job: ClaimedJob, exc: BaseException, reason: str
    ) -> Outcome:
        """A failed attempt: retried after the task's backoff, or final at max attempts."""
        final = job.attempt >= job.max_attempts
        backoff = task.backoff if task is not None else self.registry.backoff
        delay = 0.0 if final else backoff.delay(job.attempt, self.rng)
        return Outcome.failure(
            final=final,
            reason=reason,
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
            delay=delay,
        )

    async def _call(self, task: Task, ctx: JobContext, args: dict[str, Any]) -> Any:
        if task.timeout is None:  # the common case: no Timeout object per job
            return await self._invoke(task, ctx, args)
        timeout = asyncio.timeout(task.timeout)
        try:
            async with timeout:
                return await self._invoke(task, ctx, args)
        except TimeoutError as exc:
            if timeout.expired():
                raise _TimedOut(f"timed out after {task.timeout}s") from exc
            raise

    async def _invoke(self, task: Task, ctx: JobContext, args: dict[str, Any]) -> Any:
        if task.process:
            return await self.processes.run(
                call_by_reference, task.fn.__module__, task.fn.__qualname__, args
            )
        lead = (ctx,) if task.wants_context else ()
        if task.is_async:
            return await task.fn(*lead, **args)
        call = functools.partial(task.fn, *lead, **args)
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, context.run, call)
