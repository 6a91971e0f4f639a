"""One attempt of a job inside a worker: its context, its tasks, and how it is stopped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from lockstep.jobs.context import JobContext
from lockstep.jobs.job import ClaimedJob
from lockstep.jobs.outcome import Outcome

StopReason = Literal["aborted", "lost", "shutdown"]


@dataclass(eq=False)
class Attempt:
    """A claimed job being run. ``handler`` is the task running the handler (cancelled to
    stop it); once ``finishing`` is set the handler has returned and nothing stops it."""

    job: ClaimedJob
    ctx: JobContext
    runner: asyncio.Task[None] | None = None
    handler: asyncio.Task[Any] | None = None
    stop_reason: StopReason | None = None
    finishing: bool = False
    slot_freed: bool = False

    def stop(self, reason: StopReason) -> None:
        """Stop the handler (the first reason wins): an abort was requested, the lease was
        lost to another attempt, or the worker shuts down and stops waiting."""
        if self.stop_reason is not None or self.finishing:
            return
        self.stop_reason = reason
        self.ctx.mark_aborted()
        if self.handler is not None and not self.handler.done():
            self.handler.cancel()


def stopped_outcome(reason: StopReason) -> Outcome | None:
    """What a stopped attempt records: ``aborted``; ``released`` (back to the queue, the
    attempt not spent) at shutdown; nothing at all when its lease was lost (another
    attempt owns the job now)."""
    if reason == "aborted":
        return Outcome("aborted")
    if reason == "shutdown":
        return Outcome("released")
    return None
