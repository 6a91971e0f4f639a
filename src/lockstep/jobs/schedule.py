"""Periodic jobs: a schedule names a task, a cadence (cron or a fixed interval) and what to do
about ticks missed while no scheduler ran.

The decisions are pure (:meth:`Schedule.due_ticks`); the scheduler that writes them (see
``scheduler.py``) relies on one database rule for "exactly one job per (schedule, tick)":
the job's ``schedule_key`` is unique, so any number of schedulers may insert the same tick.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lockstep.exceptions import ConfigurationError
from lockstep.jobs.cron import Cron

CatchUp = Literal["all", "latest", "none"]
"""Missed ticks (the scheduler was down): enqueue ``all`` of them (up to ``max_catch_up``),
only the ``latest``, or ``none``. The next future tick is always enqueued."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Schedule:
    """``task`` enqueued with ``args`` at every tick of ``cron`` (UTC) or of ``every`` seconds
    (aligned to the Unix epoch, so every scheduler computes the same ticks)."""

    name: str
    task: str
    cron: Cron | None = None
    every: float | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    catch_up: CatchUp = "latest"
    max_catch_up: int = 100

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ConfigurationError(f"schedule {self.name!r} needs exactly one of cron / every")
        if self.every is not None and self.every <= 0:
            raise ConfigurationError(f"schedule {self.name!r}: every must be > 0 seconds")
        if self.catch_up not in ("all", "latest", "none"):
            raise ConfigurationError(
                f"schedule {self.name!r}: catch_up must be 'all', 'latest' or 'none'"
            )
        if "@" in self.name:
            raise ConfigurationError(f"schedule name {self.name!r} may not contain '@'")

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first tick strictly after ``moment`` (aware), in UTC."""
        if self.cron is not None:
            return self.cron.next_after(moment)
        assert self.every is not None
        elapsed = (moment.astimezone(dt.UTC) - _EPOCH).total_seconds()
        index = math.floor(elapsed / self.every) + 1
        tick = _EPOCH + dt.timedelta(seconds=index * self.every)
        return tick if tick > moment else tick + dt.timedelta(seconds=self.every)

    def due_ticks(self, last_tick: dt.datetime | None, now: dt.datetime) -> list[dt.datetime]:
        """The ticks to enqueue now, oldest first, given the last tick already enqueued.

        Empty while ``last_tick`` is still in the future (its job waits in the table). The
        first time a schedule is seen, only its next tick. Otherwise the missed ticks in
        ``(last_tick, now]`` chosen by ``catch_up``, then the next tick after ``now``.
        """
        upcoming = self.next_after(now)
        if last_tick is None:
            return [upcoming]
        if last_tick > now:
            return []
        missed: list[dt.datetime] = []
        if self.catch_up != "none":
            tick = self.next_after(last_tick)
            while tick <= now:
                missed.append(tick)
                if len(missed) > self.max_catch_up:
                    missed.pop(0)
                tick = self.next_after(tick)
            if self.catch_up == "latest":
                missed = missed[-1:]
        return [*missed, upcoming]

    def key(self, tick: dt.datetime) -> str:
        """The job's unique ``schedule_key`` for ``tick``."""
        return f"{self.name}@{tick.astimezone(dt.UTC).isoformat()}"
