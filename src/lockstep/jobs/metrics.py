"""Prometheus metrics of the jobs system, in a registry passed in (never the global one).

Counters and histograms are updated by the workers of this process; the depth gauges are
sampled from the database by :meth:`JobMetrics.observe_stats` (workers do it periodically;
an API process can call :meth:`Jobs.refresh_metrics`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue right now: jobs per live state, the oldest ready job's age, paused or not."""

    queue: str
    scheduled: int
    queued: int
    running: int
    oldest_queued_seconds: float
    paused: bool

    def to_json(self) -> dict[str, object]:
        return {
            "queue": self.queue,
            "scheduled": self.scheduled,
            "queued": self.queued,
            "running": self.running,
            "oldest_queued_seconds": round(self.oldest_queued_seconds, 3),
            "paused": self.paused,
        }


class TaskMetrics:
    """The metrics of one (queue, task), resolved to their label children."""

    def __init__(self, metrics: JobMetrics, queue: str, task: str) -> None:
        self._metrics, self._queue, self._task = metrics, queue, task
        self.run_time = metrics.run_time.labels(queue, task)
        self.wait_time = metrics.wait_time.labels(queue)
        self.failures = metrics.failures.labels(queue, task)
        self.retries = metrics.retries.labels(queue, task)
        self.fenced = metrics.fenced.labels(queue)
        self._finished: dict[str, Counter] = {}

    def record(self, outcome: str, run_seconds: float, *, accepted: bool) -> None:
        """Count one ended attempt (``outcome`` is the Outcome kind)."""
        self.finished(outcome).inc()
        if outcome in ("succeeded", "result", "retry", "failed"):
            self.run_time.observe(run_seconds)
        if outcome in ("retry", "failed"):
            self.failures.inc()
        if outcome == "retry":
            self.retries.inc()
        if not accepted:
            self.fenced.inc()

    def finished(self, outcome: str) -> Counter:
        child = self._finished.get(outcome)
        if child is None:
            child = self._finished[outcome] = self._metrics.finished.labels(
                self._queue, self._task, outcome
            )
        return child


class JobMetrics:
    """``lockstep_jobs_*`` metrics: depth, oldest age, run and wait time, outcomes,
    failures, retries and reclaims."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.depth = Gauge(
            "lockstep_jobs_depth",
            "Jobs per queue and live state (scheduled, queued, running), sampled.",
            ["queue", "state"],
            registry=r,
        )
        self.oldest_age = Gauge(
            "lockstep_jobs_oldest_age_seconds",
            "How long the oldest ready (queued) job of each queue has waited, sampled.",
            ["queue"],
            registry=r,
        )
        self.run_time = Histogram(
            "lockstep_job_run_seconds",
            "Handler run time per attempt, by queue and task.",
            ["queue", "task"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.wait_time = Histogram(
            "lockstep_job_wait_seconds",
            "From a job being due to its attempt starting (database clock), by queue.",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.finished = Counter(
            "lockstep_jobs_finished_total",
            "Attempts ended, by queue, task and outcome (succeeded, retry, failed, snoozed, "
            "aborted, released).",
            ["queue", "task", "outcome"],
            registry=r,
        )
        self.failures = Counter(
            "lockstep_job_failures_total",
            "Attempts that raised or timed out (retried or not), by queue and task.",
            ["queue", "task"],
            registry=r,
        )
        self.retries = Counter(
            "lockstep_job_retries_total",
            "Failed attempts scheduled to run again, by queue and task.",
            ["queue", "task"],
            registry=r,
        )
        self.reclaims = Counter(
            "lockstep_job_reclaims_total",
            "Running jobs whose lease expired (worker presumed dead) and were taken back.",
            ["queue"],
            registry=r,
        )
        self.fenced = Counter(
            "lockstep_job_fenced_total",
            "Completions refused because the attempt no longer owned the job.",
            ["queue"],
            registry=r,
        )
        self._seen: set[str] = set()
        self._children: dict[tuple[str, str], TaskMetrics] = {}

    def of(self, queue: str, task: str) -> TaskMetrics:
        """The label children of one (queue, task), created once (the per-job hot path)."""
        children = self._children.get((queue, task))
        if children is None:
            children = self._children[(queue, task)] = TaskMetrics(self, queue, task)
        return children

    def observe_stats(self, stats: Iterable[QueueStats]) -> None:
        """Set the gauges from a fresh sample; queues absent from it read zero."""
        current = set()
        for item in stats:
            current.add(item.queue)
            self.depth.labels(item.queue, "scheduled").set(item.scheduled)
            self.depth.labels(item.queue, "queued").set(item.queued)
            self.depth.labels(item.queue, "running").set(item.running)
            self.oldest_age.labels(item.queue).set(item.oldest_queued_seconds)
        for queue in self._seen - current:
            for state in ("scheduled", "queued", "running"):
                self.depth.labels(queue, state).set(0)
            self.oldest_age.labels(queue).set(0)
        self._seen |= current
