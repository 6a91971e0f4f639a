"""Concurrency and rate limits that hold across every worker, and the pure choice of which
candidate jobs a claim may take under them.

Limits live in code (all workers run the same registry); their state lives in the database
(running rows, token buckets), read and updated inside the claiming transaction, which is
serialized for limited queues (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL). So "at most 2 running" means at most 2 rows in state ``running``, whichever
workers hold them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lockstep.exceptions import ConfigurationError


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` job starts per ``per`` seconds (a token bucket holding ``limit``)."""

    limit: int
    per: float = 1.0

    def __post_init__(self) -> None:
        if self.limit < 1 or self.per <= 0:
            raise ConfigurationError("Rate needs limit >= 1 and per > 0 seconds")

    def refill(self, tokens: float, elapsed: float) -> float:
        """The bucket after ``elapsed`` seconds of refilling from ``tokens``."""
        return min(float(self.limit), tokens + max(elapsed, 0.0) * self.limit / self.per)


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """Limits of one queue across all workers: ``concurrency`` jobs running at once, starts
    within ``rate``. Each worker's own slots (``--concurrency``) apply on top."""

    concurrency: int | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigurationError("a queue concurrency limit must be >= 1")

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate is not None


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Limits per limit key (e.g. one customer) of one task, across all workers."""

    concurrency: int | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigurationError("a key concurrency limit must be >= 1")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A queued job a claim may take, in dequeue order."""

    id: int
    task: str
    limit_key: str | None


def queue_budget(wanted: int, limits: QueueLimits, *, running: int, tokens: float | None) -> int:
    """How many jobs a claim may start in a queue: the free slots asked for, minus what the
    queue-wide concurrency and rate allow."""
    budget = wanted
    if limits.concurrency is not None:
        budget = min(budget, limits.concurrency - running)
    if limits.rate is not None and tokens is not None:
        budget = min(budget, math.floor(tokens + 1e-9))
    return max(budget, 0)


def pick(
    candidates: Sequence[Candidate],
    *,
    budget: int,
    key_limits: Callable[[str], KeyLimits | None],
    running_by_key: Mapping[str, int],
    key_tokens: Mapping[str, float],
) -> list[Candidate]:
    """The candidates to start, in order, without exceeding ``budget`` or any key's limits.

    ``running_by_key`` counts running jobs per limit key; ``key_tokens`` holds the refilled
    bucket of each rate-limited key (a key missing from it has a full bucket).
    """
    chosen: list[Candidate] = []
    taken: dict[str, int] = {}
    for candidate in candidates:
        if len(chosen) >= budget:
            break
        key = candidate.limit_key
        limits = key_limits(candidate.task) if key is not None else None
        if key is not None and limits is not None:
            used = taken.get(key, 0)
            if (
                limits.concurrency is not None
                and running_by_key.get(key, 0) + used >= limits.concurrency
            ):
                continue
            if limits.rate is not None:
                available = key_tokens.get(key, float(limits.rate.limit))
                if available - used < 1 - 1e-9:
                    continue
            taken[key] = used + 1
        chosen.append(candidate)
    return chosen
