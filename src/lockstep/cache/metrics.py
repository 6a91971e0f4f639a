"""Prometheus metrics for the cache, registered once per registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CacheMetrics:
    """Hit/miss/bypass lookups, stored and rejected fills, invalidations, errors, and the
    coherence of the Redis backend: its breaker, generations drawn, local flushes."""

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
        self.breaker_state = Gauge(
            "lockstep_cache_breaker_state",
            "The cache backend's circuit breaker: 0 closed, 1 half-open (probing), 2 open "
            "(every call fails fast and requests are served from the database).",
            registry=registry,
        )
        self.breaker_opened = Counter(
            "lockstep_cache_breaker_opened_total",
            "Times the breaker opened (consecutive backend failures, or a silent channel).",
            registry=registry,
        )
        self.breaker_rejected = Counter(
            "lockstep_cache_breaker_rejected_total",
            "Backend calls not attempted because the breaker was open (served from the "
            "database without waiting).",
            registry=registry,
        )
        self.resets = Counter(
            "lockstep_cache_generation_resets_total",
            "New generations this process drew, retiring every cached value, by reason: "
            "lost (the clock hash was deleted, flushed or evicted), restart (another Redis "
            "server process, e.g. restored from a snapshot), stall (Redis ran nothing of ours "
            "for too long), bump_failed, relay (the relay lost its place in the log).",
            ["reason"],
            registry=registry,
        )
        self.flushes = Counter(
            "lockstep_cache_local_flushes_total",
            "Times this process dropped its stamp mirror and L1, by reason (generation, gap, "
            "backwards, channel, subscribed, reset, all, ...).",
            ["reason"],
            registry=registry,
        )
        self.messages = Counter(
            "lockstep_cache_invalidation_messages_total",
            "Invalidation messages received, by what the mirror did: apply, flush, ignore.",
            ["action"],
            registry=registry,
        )
        self._hit_l1 = self.lookups.labels("hit_l1")
        self._hit_l2 = self.lookups.labels("hit_l2")
        self._miss = self.lookups.labels("miss")
        self._bypass = self.lookups.labels("bypass")
        self._stored = self.fills.labels("stored")
        self._rejected = self.fills.labels("rejected")
