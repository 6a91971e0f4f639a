"""HttpMetrics and DatabasePoolCollector against real registries (and a real SQLite pool)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from lockstep.db import Database
from lockstep.observability.exposition import MetricsExposition
from lockstep.observability.metrics import DURATION_BUCKETS, DatabasePoolCollector, HttpMetrics
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
