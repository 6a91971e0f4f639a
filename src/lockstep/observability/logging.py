"""structlog configuration: JSON lines in production, a readable console in development.

Every log line written while a request is served carries its ``request_id`` (the
:func:`add_request_id` processor, fed by the HTTP layer through
:mod:`lockstep.observability.request_context`), so a line written deep in a database hook can
be traced back to the request that caused it.
"""

from __future__ import annotations

import logging
import sys
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

from lockstep.observability.json_lines import JsonLineLogger, json_fallback
from lockstep.observability.request_context import current_request_id
from lockstep.settings import Settings


def _orjson_dumps(obj: Any, default: Any) -> str:
    return orjson.dumps(obj, default=default).decode()


def add_request_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: add the current request's ``request_id`` unless the event has one.

    The id lives in lockstep's own context variable, not in structlog's, so application code
    clearing structlog's context (``clear_contextvars()``) cannot drop it from its lines.
    Runs after ``merge_contextvars``: an id the app bound there itself wins.
    """
    request_id = current_request_id()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


class _NamedWriteLogger(structlog.WriteLogger):
    """A structlog WriteLogger with the ``name`` that ``add_logger_name`` reads."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


@dataclass(frozen=True, slots=True)
class LoggingSetup:
    """What :func:`configure_logging` installed: level, processor chain and output stream.

    ``lock`` is the stream handler's: the access logger holds it while writing, so its lines
    never interleave with those of the standard library's handler.
    """

    level: int
    processors: tuple[Any, ...]
    stream: TextIO
    log_format: Literal["json", "console"] = "json"
    lock: AbstractContextManager[Any] = field(default_factory=threading.RLock)

    def access_logger(self, name: str) -> Any:
        """The cheapest logger writing this setup's lines, for one line per request.

        With the JSON format a :class:`~lockstep.observability.json_lines.JsonLineLogger`
        (the line the processor chain would write, at less than half the cost of
        :meth:`direct_logger`); with the console format, :meth:`direct_logger`. Either has
        ``info(event, **fields)`` and ``is_enabled_for(level)``; neither goes through
        ``capture_logs``.
        """
        if self.log_format == "json":
            return JsonLineLogger(name, self.level, self.stream, self.lock)
        return self.direct_logger(name)

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
    # JsonLineLogger reproduces this chain for its events: change both together (a test
    # compares their lines).
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if settings.log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(
            serializer=_orjson_dumps, default=json_fallback
        )

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
    # Handler.__init__ creates the lock; the fallback only satisfies the type.
    lock = handler.lock if handler.lock is not None else threading.RLock()
    return LoggingSetup(level, direct, stream, settings.log_format, lock)
