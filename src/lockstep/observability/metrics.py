"""Prometheus metrics lockstep exports: HTTP request counts and latencies, DB pool gauges.

Every metric lives in a registry passed in (default: a fresh ``CollectorRegistry``, never the
process-global one), so two apps in one process keep separate counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# Request latencies of a JSON API: 1 ms resolution at the fast end, 10 s at the slow end.
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# Methods outside this set are counted as "OTHER": a client can send any token as a method
# and each would otherwise become a new time series.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


class HttpMetrics:
    """``http_requests_total{method,route,status}`` and
    ``http_request_duration_seconds{method,route}``, registered in ``registry``.

    :meth:`observe` is the per-request hot path: label children are created once per
    ``(method, route, status)`` and cached.
    """

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            namespace=namespace,
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from receiving an HTTP request to the end of its response, by route template.",
            ["method", "route"],
            namespace=namespace,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and record its duration. ``route`` must be a template."""
        if method not in KNOWN_METHODS:
            method = "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route),
            )
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)


class PoolStatsSource(Protocol):
    """Anything reporting connection pool counts, e.g. :class:`lockstep.db.Database`."""

    def pool_stats(self) -> Mapping[str, Mapping[str, int]]: ...


class DatabasePoolCollector(Collector):
    """``db_pool_connections{pool,state}`` gauges read from ``database.pool_stats()`` at scrape.

    ``pool`` is the pool's role (``writer``, ``reader``); ``state`` is one of the keys the
    database reports (``size``, ``checked_out``, ``idle``, ``overflow``).
    """

    def __init__(self, database: PoolStatsSource, namespace: str = "") -> None:
        self._database = database
        self._name = f"{namespace}_db_pool_connections" if namespace else "db_pool_connections"

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self._name, "Database pool connections by pool and state.", labels=["pool", "state"]
        )

    def describe(self) -> Iterable[Metric]:
        # Describing without collecting keeps registration from touching the database.
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for pool, states in sorted(self._database.pool_stats().items()):
            for state, value in sorted(states.items()):
                family.add_metric([pool, state], value)
        yield family
