"""Durable background jobs in the application's own database.

A job is a row written by the caller's transaction (it exists iff that transaction
commits), leased to one worker attempt at a time, retried with backoff, rescued when its
worker dies, and completed under a ``(worker_id, attempt)`` fence. See ``docs/jobs.md``.
"""

from lockstep.jobs.backoff import Backoff
from lockstep.jobs.context import JobAborted, JobContext, Snooze
from lockstep.jobs.cron import Cron
from lockstep.jobs.enqueue import NewJob, enqueue, enqueue_many
from lockstep.jobs.errors import (
    JobArgumentsError,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    ResultUnavailableError,
    UnknownTaskError,
)
from lockstep.jobs.job import ClaimedJob, JobInfo, JobProgress
from lockstep.jobs.limits import KeyLimits, QueueLimits, Rate
from lockstep.jobs.metrics import JobMetrics, QueueStats
from lockstep.jobs.revisions import JOBS_TABLES, ensure_jobs_tables
from lockstep.jobs.runtime import Jobs
from lockstep.jobs.schedule import CatchUp, Schedule
from lockstep.jobs.schema import FINAL_STATES, LIVE_STATES, JobState
from lockstep.jobs.task import Task, TaskRegistry
from lockstep.jobs.worker import Worker

__all__ = [
    "FINAL_STATES",
    "JOBS_TABLES",
    "LIVE_STATES",
    "Backoff",
    "CatchUp",
    "ClaimedJob",
    "Cron",
    "JobAborted",
    "JobArgumentsError",
    "JobContext",
    "JobFailedError",
    "JobInfo",
    "JobMetrics",
    "JobNotFoundError",
    "JobProgress",
    "JobState",
    "JobStateError",
    "Jobs",
    "KeyLimits",
    "LeaseLostError",
    "NewJob",
    "QueueLimits",
    "QueueStats",
    "Rate",
    "ResultUnavailableError",
    "Schedule",
    "Snooze",
    "Task",
    "TaskRegistry",
    "UnknownTaskError",
    "Worker",
    "enqueue",
    "enqueue_many",
    "ensure_jobs_tables",
]
