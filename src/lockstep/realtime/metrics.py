"""Prometheus metrics of the realtime server, registered on the application's registry.

* ``lockstep_realtime_connections`` (gauge, by transport) and
  ``lockstep_realtime_subscriptions`` (gauge): what is open in this process;
* ``lockstep_realtime_publications_delivered_total``: publications handed to a client's
  send buffer (one per subscriber);
* ``lockstep_realtime_publications_dropped_total``: publications a client did not get live
  (its buffer overflowed, or history no longer held a gap's offsets): it resubscribes or
  reconnects and recovers, or is told it cannot;
* ``lockstep_realtime_commit_to_send_seconds``: from the commit (in any process) to the
  publication's hand-off to this process's subscribers;
* ``lockstep_realtime_disconnects_total`` (by code).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.connections = Gauge(
            "lockstep_realtime_connections",
            "Open realtime connections",
            ["transport"],
            registry=registry,
        )
        self.subscriptions = Gauge(
            "lockstep_realtime_subscriptions", "Channel subscriptions", registry=registry
        )
        self.delivered = Counter(
            "lockstep_realtime_publications_delivered",
            "Publications handed to a client's send buffer",
            registry=registry,
        )
        self.dropped = Counter(
            "lockstep_realtime_publications_dropped",
            "Publications a client did not get live (it recovers or is told it cannot)",
            registry=registry,
        )
        self.latency = Histogram(
            "lockstep_realtime_commit_to_send_seconds",
            "From commit to the hand-off to this process's subscribers",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.disconnects = Counter(
            "lockstep_realtime_disconnects",
            "Connections closed by the server, by protocol code",
            ["code"],
            registry=registry,
        )
