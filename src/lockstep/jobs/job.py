"""A job as lockstep hands it out: :class:`ClaimedJob` to the worker that leased it,
:class:`JobInfo` to anyone looking (admin API, CLI, result waiters)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from lockstep.jobs.schema import JobState


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """One attempt of a job, leased to a worker. ``(worker_id, attempt)`` is its fence."""

    id: int
    task: str
    queue: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    priority: int
    run_at: dt.datetime
    created_at: dt.datetime
    started_at: dt.datetime
    limit_key: str | None

    @property
    def wait_seconds(self) -> float:
        """Time from the job being due to this attempt starting (database clock)."""
        return max((self.started_at - self.run_at).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class JobInfo:
    """Everything stored about a job. ``has_result`` says a result is kept and not expired."""

    id: int
    task: str
    queue: str
    state: JobState
    priority: int
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    run_at: dt.datetime
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    worker_id: str | None
    unique_key: str | None
    schedule_key: str | None
    tenant: str | None
    reason: str | None
    error: str | None
    traceback: str | None
    errors: list[dict[str, Any]]
    progress: dict[str, Any] | None
    has_result: bool
    result_expires_at: dt.datetime | None
    abort_requested: bool
    reclaims: int
    snoozes: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, dt.datetime):
                value = value.isoformat()
            elif isinstance(value, JobState):
                value = value.value
            out[name] = value
        return out


def loads(value: Any) -> Any:
    """A JSON text column's value (None stays None)."""
    if value is None:
        return None
    return orjson.loads(value)


def as_dict(value: Any) -> dict[str, Any]:
    loaded = loads(value)
    return dict(loaded) if isinstance(loaded, Mapping) else {}


@dataclass(frozen=True, slots=True)
class JobProgress:
    """A progress report of a running job, as stored and as passed to progress listeners."""

    job_id: int
    task: str
    queue: str
    attempt: int
    current: float
    total: float | None
    message: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "task": self.task,
            "queue": self.queue,
            "attempt": self.attempt,
            "current": self.current,
            "total": self.total,
            "message": self.message,
        }
