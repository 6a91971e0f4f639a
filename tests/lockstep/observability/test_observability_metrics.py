"""HttpMetrics and DatabasePoolCollector against real registries (and a real SQLite pool)."""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)

from lockstep.db import Database
from lockstep.observability.exposition import MetricsExposition
from lockstep.observability.metrics import (
    DURATION_BUCKETS,
    DatabasePoolCollector,
    HttpMetrics,
    InProcessHttpMetrics,
    PrometheusHttpMetrics,
)
from lockstep.settings import load_settings


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/m.db"))
    yield db
    await db.dispose()


def test_default_registry_is_new_and_not_global() -> None:
    first, second = HttpMetrics(), HttpMetrics()  # would raise "Duplicated timeseries" if shared
    assert first.registry is not second.registry
    assert first.registry is not REGISTRY
    assert REGISTRY.get_sample_value("http_requests_total", {}) is None


def test_observe_counts_and_buckets() -> None:
    metrics = HttpMetrics()
    metrics.observe("GET", "/items/{id}", 200, 0.003)
    metrics.observe("GET", "/items/{id}", 200, 0.2)
    metrics.observe("GET", "/items/{id}", 404, 0.001)
    registry = metrics.registry
    labels = {"method": "GET", "route": "/items/{id}"}
    assert registry.get_sample_value("http_requests_total", {**labels, "status": "200"}) == 2
    assert registry.get_sample_value("http_requests_total", {**labels, "status": "404"}) == 1
    assert registry.get_sample_value("http_request_duration_seconds_count", labels) == 3
    assert (
        registry.get_sample_value("http_request_duration_seconds_bucket", {**labels, "le": "0.005"})
        == 2
    )
    assert (
        registry.get_sample_value("http_request_duration_seconds_bucket", {**labels, "le": "0.1"})
        == 2
    )
    assert DURATION_BUCKETS[0] == 0.001
    assert DURATION_BUCKETS[-1] == 10.0


def test_unknown_methods_are_folded() -> None:
    metrics = HttpMetrics()
    for method in ("BREW", "WHEN", "GET"):
        metrics.observe(method, "/x", 405, 0.001)
    samples = {
        sample.labels["method"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "http_requests_total"
    }
    assert samples == {"OTHER", "GET"}


async def test_pool_collector_reads_a_real_pool(database: Database) -> None:
    registry = CollectorRegistry()
    registry.register(DatabasePoolCollector(database, namespace="app"))
    async with database.reader() as session:
        await session.connection()  # check a reader connection out
        value = registry.get_sample_value
        assert value("app_db_pool_connections", {"pool": "reader", "state": "checked_out"}) == 1
    assert (
        registry.get_sample_value("app_db_pool_connections", {"pool": "reader", "state": "idle"})
        == 1
    )
    assert (
        registry.get_sample_value("app_db_pool_connections", {"pool": "writer", "state": "size"})
        == 1
    )


def test_registering_the_pool_collector_does_not_touch_the_database() -> None:
    class Exploding:
        def pool_stats(self) -> dict[str, dict[str, int]]:
            raise AssertionError("collected at registration")

    CollectorRegistry().register(DatabasePoolCollector(Exploding()))


def test_single_process_exposition_renders_the_registry() -> None:
    metrics = HttpMetrics()
    metrics.observe("GET", "/", 200, 0.01)
    exposition = MetricsExposition(metrics.registry)
    assert exposition.render() == generate_latest(metrics.registry)
    assert exposition.content_type.startswith("text/plain; version=0.0.4")


# -- the in-process collector against prometheus_client's own metrics ---------------------------

OBSERVATIONS = [
    ("GET", "/items/{id}", 200, 0.003),
    ("GET", "/items/{id}", 200, 0.2),
    ("GET", "/items/{id}", 404, 0.001),  # exactly on a bound: "less than or equal"
    ("BREW", "/items/{id}", 405, 0.0),
    ("POST", "/items", 201, 0.0025),
    ("POST", "/items", 201, 11.0),  # above the last bound: only +Inf
    ("GET", "<unmatched>", 404, 0.0004),
]


def render(namespace: str, in_process: bool) -> str:
    registry = CollectorRegistry()
    if in_process:
        metrics: Any = InProcessHttpMetrics(namespace)
        registry.register(metrics)
    else:
        metrics = PrometheusHttpMetrics(registry, namespace)
    for observation in OBSERVATIONS:
        metrics.observe(*observation)
    text = generate_latest(registry).decode()
    # Creation times differ by construction; their presence and labels must not.
    return re.sub(r"^(\S+_created\{.*\}) \S+$", r"\1 <time>", text, flags=re.MULTILINE)


@pytest.mark.parametrize("namespace", ["", "casebook"])
@pytest.mark.parametrize("created", [True, False])
def test_in_process_exposition_equals_prometheus_client(namespace: str, created: bool) -> None:
    if not created:
        disable_created_metrics()
    try:
        expected = render(namespace, in_process=False)
        assert render(namespace, in_process=True) == expected
    finally:
        enable_created_metrics()
    assert ("_created{" in expected) is created
    prefix = f"{namespace}_" if namespace else ""
    bucket = 'http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/items"} 2.0'
    assert prefix + bucket in expected


def test_single_process_uses_the_in_process_collector() -> None:
    metrics = HttpMetrics()
    assert not metrics.multiprocess
    metrics.observe("GET", "/", 200, 0.01)
    assert (
        metrics.registry.get_sample_value(
            "http_requests_total", {"method": "GET", "route": "/", "status": "200"}
        )
        == 1
    )


def test_same_registry_twice_is_refused_like_prometheus_client() -> None:
    registry = CollectorRegistry()
    HttpMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        HttpMetrics(registry)


def test_observe_from_many_threads_loses_nothing() -> None:
    metrics = HttpMetrics()

    def work() -> None:
        for index in range(1000):
            metrics.observe("GET", f"/r{index % 3}", 200, 0.002)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    value = metrics.registry.get_sample_value
    total = sum(
        value("http_requests_total", {"method": "GET", "route": f"/r{i}", "status": "200"}) or 0
        for i in range(3)
    )
    assert total == 8000
    counts = [
        value("http_request_duration_seconds_count", {"method": "GET", "route": f"/r{i}"})
        for i in range(3)
    ]
    assert sum(c or 0 for c in counts) == 8000
