"""Prometheus metrics lockstep exports: HTTP request counts and latencies, DB pool gauges.

Every metric lives in a registry passed in (default: a fresh ``CollectorRegistry``, never the
process-global one), so two apps in one process keep separate counts.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import metrics as prometheus_metrics
from prometheus_client import values as prometheus_values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

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

_REQUESTS_HELP = "HTTP requests answered, by method, route template and status code."
_DURATION_HELP = (
    "Time from receiving an HTTP request to the end of its response, by route template."
)

# Methods outside this set are counted as "OTHER": a client can send any token as a method
# and each would otherwise become a new time series.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


class HttpMetrics:
    """``http_requests_total{method,route,status}`` and
    ``http_request_duration_seconds{method,route}``, registered in ``registry``.

    :meth:`observe` is the per-request hot path. In a single process the two metrics are kept
    by one collector of plain counters (:class:`InProcessHttpMetrics`: a fraction of the cost
    of prometheus_client's ``Counter`` and ``Histogram``, same exposition); in
    multi-process mode (``PROMETHEUS_MULTIPROC_DIR``) by prometheus_client's own metrics,
    which write to the shared directory.
    """

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.namespace = namespace
        self.multiprocess = prometheus_values.ValueClass is not prometheus_values.MutexValue
        if self.multiprocess:
            recorder: InProcessHttpMetrics | PrometheusHttpMetrics = PrometheusHttpMetrics(
                self.registry, namespace
            )
        else:
            recorder = InProcessHttpMetrics(namespace)
            self.registry.register(recorder)
        # The recorder's own bound method: one call per request instead of two.
        self.observe: Callable[[str, str, int, float], None] = recorder.observe
        """``observe(method, route, status, seconds)``: count one request and record its
        duration. ``route`` must be a template; methods outside :data:`KNOWN_METHODS` are
        counted as ``OTHER``."""


def _full_name(namespace: str, name: str) -> str:
    return f"{namespace}_{name}" if namespace else name


class InProcessHttpMetrics(Collector):
    """The two HTTP metrics as a collector over plain counters, for a single process.

    Its exposition is what prometheus_client's ``Counter`` and ``Histogram`` (as used in
    multi-process mode) would produce for the same observations: same families, samples
    (``_total``/``_created``; ``_bucket``/``_count``/``_sum``/``_created``), labels, order
    and values, and ``disable_created_metrics()`` is honoured. :meth:`observe` is safe to
    call from several threads.
    """

    def __init__(self, namespace: str = "", buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self._requests_name = _full_name(namespace, "http_requests")
        self._duration_name = _full_name(namespace, "http_request_duration_seconds")
        bounds = sorted(float(bound) for bound in buckets)
        # As prometheus_client's Histogram: +Inf is always the last bucket.
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        self._le: tuple[str, ...] = tuple(
            floatToGoString(bound)  # type: ignore[no-untyped-call]
            for bound in self._bounds
        )
        self._lock = threading.Lock()
        # (method, route, status) -> (count cell, its (method, route) histogram):
        # one dict lookup per request finds both.
        self._series: dict[tuple[str, str, int], tuple[list[float], list[float]]] = {}
        # (method, route) -> [sum, bucket counts (not cumulative)...]
        self._histograms: dict[tuple[str, str], list[float]] = {}
        self._created: dict[object, float] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and record its duration (see :class:`HttpMetrics`)."""
        if method not in KNOWN_METHODS:
            method = "OTHER"
        # Prometheus buckets are "less than or equal": the first bound >= seconds.
        bucket = bisect_left(self._bounds, seconds) + 1
        with self._lock:
            series = self._series.get((method, route, status))
            if series is None:
                series = self._new_series(method, route, status)
            series[0][0] += 1.0
            histogram = series[1]
            histogram[0] += seconds
            histogram[bucket] += 1.0

    def _new_series(self, method: str, route: str, status: int) -> tuple[list[float], list[float]]:
        now = time.time()
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self._histograms[(method, route)] = [0.0] * (len(self._bounds) + 1)
            self._created[(method, route)] = now
        series = self._series[(method, route, status)] = ([0.0], histogram)
        self._created[(method, route, status)] = now
        return series

    def describe(self) -> Iterable[Metric]:
        return [self._requests_family(), self._duration_family()]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            series = [(key, cells[0][0]) for key, cells in self._series.items()]
            histograms = [(key, list(values)) for key, values in self._histograms.items()]
            created = dict(self._created)
        # prometheus_client's switch (PROMETHEUS_DISABLE_CREATED_SERIES or
        # disable_created_metrics()), read where its own metrics read it.
        with_created = bool(getattr(prometheus_metrics, "_use_created", True))

        requests = self._requests_family()
        for (method, route, status), count in series:
            key = (method, route, status)
            requests.add_metric(
                [method, route, str(status)], count, created[key] if with_created else None
            )
        yield requests

        duration = self._duration_family()
        for (method, route), (total, *counts) in histograms:
            cumulative = list(accumulate(counts))
            duration.add_metric(
                [method, route], list(zip(self._le, cumulative, strict=True)), total
            )
            if with_created:
                labels = {"method": method, "route": route}
                duration.samples.append(
                    Sample(self._duration_name + "_created", labels, created[(method, route)])
                )
        yield duration

    def _requests_family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            self._requests_name, _REQUESTS_HELP, labels=["method", "route", "status"]
        )

    def _duration_family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            self._duration_name, _DURATION_HELP, labels=["method", "route"]
        )


class PrometheusHttpMetrics:
    """The two HTTP metrics as prometheus_client metrics (multi-process mode)."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.requests = Counter(
            "http_requests_total",
            _REQUESTS_HELP,
            ["method", "route", "status"],
            namespace=namespace,
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            _DURATION_HELP,
            ["method", "route"],
            namespace=namespace,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        # Label children are created once per (method, route, status).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
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
