"""structlog configuration: JSON lines in production, a readable console in development.

Every log line carries the request id bound by the HTTP layer (``structlog.contextvars``), so
a line written deep in a database hook can be traced back to the request that caused it.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
import structlog

from lockstep.settings import Settings


def _orjson_dumps(obj: Any, default: Any) -> str:
    return orjson.dumps(obj, default=default).decode()


class _NamedWriteLogger(structlog.WriteLogger):
    """A structlog WriteLogger with the ``name`` that ``add_logger_name`` reads."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


@dataclass(frozen=True, slots=True)
class LoggingSetup:
    """What :func:`configure_logging` installed: level, processor chain and output stream."""

    level: int
    processors: tuple[Any, ...]
    stream: TextIO

    def direct_logger(self, name: str) -> Any:
        """A logger for hot paths (the access log) that renders and writes its own lines.

        Same processors, format, level and stream as every other line, but it skips the
        standard library's records, handlers and formatter (less than half the cost per
        line). It is bound now: a later :func:`configure_logging` does not change it, and
        ``structlog.testing.capture_logs`` does not see it (read the stream instead).
        """
        # bind() resolves the lazy proxy now instead of on every call.
        return structlog.wrap_logger(
            _NamedWriteLogger(self.stream, name),
            processors=list(self.processors),
            wrapper_class=structlog.make_filtering_bound_logger(self.level),
        ).bind()


def configure_logging(settings: Settings, stream: TextIO | None = None) -> LoggingSetup:
    """Route structlog and the standard library's logging through one renderer.

    Lines go to ``stream`` (default: ``sys.stderr``). Safe to call more than once (the last
    call wins): tests build several apps per process.
    """
    stream = stream if stream is not None else sys.stderr
    level = logging.getLevelNamesMapping()[settings.log_level]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if settings.log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)

    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.set_name("lockstep")
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != "lockstep"]
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own access log duplicates ours; its error log goes through our handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    direct = (
        *shared,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        renderer,
    )
    return LoggingSetup(level, direct, stream)
