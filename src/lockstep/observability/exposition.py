"""What ``/metrics`` serves: one registry, or every worker process's metrics summed.

Multi-process mode (several uvicorn/gunicorn workers behind one port) needs
``PROMETHEUS_MULTIPROC_DIR`` in the environment *before the process starts*: prometheus_client
decides where metric values live (memory or mmap files in that directory) when it is first
imported, so setting it later has no effect. :func:`multiprocess_dir` refuses a configuration
where lockstep's setting and that variable disagree, instead of silently serving one worker's
numbers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from lockstep.exceptions import ConfigurationError
from lockstep.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# generate_latest writes the classic text format (our names are plain ASCII), which is what
# every Prometheus version accepts and what prometheus_client itself serves by default.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def multiprocess_dir(settings: Settings) -> Path | None:
    """The directory to aggregate worker metrics from, or ``None`` for single-process mode.

    Taken from ``settings.metrics_multiprocess_dir`` or, if unset, ``PROMETHEUS_MULTIPROC_DIR``.
    Raises :class:`ConfigurationError` if the two disagree, if the directory does not exist,
    or if prometheus_client was imported before the variable was set.
    """
    env_value = os.environ.get(MULTIPROC_ENV) or None
    configured = settings.metrics_multiprocess_dir
    if configured is None and env_value is None:
        return None
    if configured is not None and (
        env_value is None or Path(env_value).resolve() != configured.resolve()
    ):
        raise ConfigurationError(
            f"LOCKSTEP_METRICS_MULTIPROCESS_DIR is {str(configured)!r} but {MULTIPROC_ENV} is "
            f"{env_value!r}; set {MULTIPROC_ENV} to the same directory in the environment "
            "before the process starts (prometheus_client reads it at import time)"
        )
    path = configured if configured is not None else Path(str(env_value))
    if not path.is_dir():
        raise ConfigurationError(
            f"metrics multi-process directory {str(path)!r} does not exist; create it (empty) "
            "before starting the workers"
        )
    if prometheus_values.ValueClass is prometheus_values.MutexValue:
        raise ConfigurationError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported, so this process "
            "keeps its metrics in memory; set it in the environment before the process starts"
        )
    return path


class MetricsExposition:
    """Render the metrics of ``registry`` in the Prometheus text format.

    With ``multiprocess_dir``, metrics backed by that directory are read from every process
    that wrote there (counters and histograms summed) instead of from ``registry``;
    ``process_local`` collectors (such as pool gauges, which prometheus_client cannot share
    between processes) are appended as seen by the process answering the scrape.
    """

    content_type = CONTENT_TYPE

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        multiprocess_dir: Path | None = None,
        process_local: Sequence[Collector] = (),
    ) -> None:
        self.registry = registry
        self.multiprocess_dir = multiprocess_dir
        self._source: Collector = registry
        if multiprocess_dir is not None:
            # Built once; MultiProcessCollector re-reads the directory on every scrape.
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
            for collector in process_local:
                merged.register(collector)
            self._source = merged

    def render(self) -> bytes:
        """The exposition body; reads pool stats and, in multi-process mode, the mmap files."""
        return generate_latest(self._source)
