"""Prometheus counters for the cache, registered once per registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class CacheMetrics:
    """Hit/miss/bypass lookups, stored and rejected fills, invalidations, errors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.lookups = Counter(
            "lockstep_cache_lookups_total",
            "Cache lookups by result (hit_l1, hit_l2, miss, bypass).",
            ["result"],
            registry=registry,
        )
        self.fills = Counter(
            "lockstep_cache_fills_total",
            "Computed values by outcome: stored, or rejected because a dependency changed "
            "while computing (a stale value prevented).",
            ["outcome"],
            registry=registry,
        )
        self.invalidations = Counter(
            "lockstep_cache_invalidations_total",
            "Version stamps bumped by committed changes.",
            registry=registry,
        )
        self.errors = Counter(
            "lockstep_cache_errors_total",
            "Cache backend failures; the request was served from the database instead.",
            ["operation"],
            registry=registry,
        )
        self.invalidation_lag = Histogram(
            "lockstep_cache_invalidation_lag_seconds",
            "From a commit's stamp bump to another process applying it.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self._hit_l1 = self.lookups.labels("hit_l1")
        self._hit_l2 = self.lookups.labels("hit_l2")
        self._miss = self.lookups.labels("miss")
        self._bypass = self.lookups.labels("bypass")
        self._stored = self.fills.labels("stored")
        self._rejected = self.fills.labels("rejected")
