"""configure_logging's request id processor and the access log's JsonLineLogger: the same
lines as the structlog processor chain, written without it."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from lockstep.observability import json_lines
from lockstep.observability.json_lines import JsonLineLogger, UtcIsoClock
from lockstep.observability.logging import LoggingSetup, add_request_id, configure_logging
from lockstep.observability.request_context import (
    bind_request_id,
    current_request_id,
    reset_request_id,
)
from lockstep.settings import load_settings

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


class Custom:
    def __structlog__(self) -> str:
        return "custom-rendering"


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def setup(tmp_path: Path, stream: io.StringIO) -> Iterator[LoggingSetup]:
    yield configure_logging(load_settings(data_dir=tmp_path, log_format="json"), stream)
    structlog.contextvars.clear_contextvars()


def pop_lines(stream: io.StringIO) -> list[str]:
    lines = stream.getvalue().splitlines()
    stream.seek(0)
    stream.truncate()
    return lines


def without_timestamp(line: str) -> list[tuple[str, Any]]:
    """The line's keys and values, in order, minus the timestamp (checked separately)."""
    parsed: dict[str, Any] = orjson.loads(line)
    assert ISO_UTC.fullmatch(parsed.pop("timestamp"))
    return list(parsed.items())


CONTEXTS: list[dict[str, Any]] = [
    {},
    {"user": "u-1"},
    {"user": "u-1", "tenant": 7, "status": "bound-status-loses"},
    {"opaque": Opaque(), "custom": Custom(), "when": datetime(2024, 5, 1, tzinfo=UTC)},
    {"request_id": "bound-by-the-app"},
]


@pytest.mark.parametrize("request_id", [None, "req-1"])
@pytest.mark.parametrize("context", CONTEXTS)
def test_json_line_logger_writes_the_chains_line(
    setup: LoggingSetup, stream: io.StringIO, request_id: str | None, context: dict[str, Any]
) -> None:
    fields = {"method": "GET", "route": "/a/{b}", "path": "/a/\u00e9\n", "status": 200}
    chain = setup.direct_logger("lockstep.access")  # structlog with the configured processors
    fast = setup.access_logger("lockstep.access")
    assert isinstance(fast, JsonLineLogger)

    token = bind_request_id(request_id) if request_id is not None else None
    structlog.contextvars.bind_contextvars(**context)
    try:
        chain.info("request", **fields, duration_ms=0.42)
        fast.info("request", **fields, duration_ms=0.42)
    finally:
        structlog.contextvars.clear_contextvars()
        if token is not None:
            reset_request_id(token)

    expected, actual = pop_lines(stream)
    assert without_timestamp(actual) == without_timestamp(expected)


def test_json_line_logger_respects_the_level(stream: io.StringIO) -> None:
    logger = JsonLineLogger("x", logging.WARNING, stream)
    logger.info("request", status=200)
    assert stream.getvalue() == ""
    assert not logger.is_enabled_for(logging.INFO)
    assert logger.is_enabled_for(logging.ERROR)


def test_access_logger_shares_the_stream_handlers_lock(setup: LoggingSetup) -> None:
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "lockstep"]
    assert setup.lock is handler.lock


def test_console_format_access_logger_renders_through_structlog(
    tmp_path: Path, stream: io.StringIO
) -> None:
    setup = configure_logging(load_settings(data_dir=tmp_path, log_format="console"), stream)
    logger = setup.access_logger("lockstep.access")
    assert not isinstance(logger, JsonLineLogger)
    logger.info("request", route="/x", status=204)
    [line] = stream.getvalue().splitlines()
    assert "request" in line
    assert "route=/x" in line.replace("'", "")


@pytest.mark.parametrize(
    "nanoseconds",
    [
        0,
        1_714_566_896_000_000_000,  # a whole second: no fraction, like isoformat()
        1_714_566_896_000_001_000,
        1_714_566_896_123_456_789,  # truncated to the microsecond
        1_714_566_896_999_999_999,
        4_102_444_800_500_000_000,
    ],
)
def test_clock_formats_like_datetime_isoformat(nanoseconds: int) -> None:
    clock = UtcIsoClock(time_ns=lambda: nanoseconds)
    second, rest = divmod(nanoseconds, 1_000_000_000)
    expected = datetime.fromtimestamp(second, UTC).replace(microsecond=rest // 1000)
    assert clock() == expected.isoformat().replace("+00:00", "Z")
    assert clock() == clock()  # from the cached second


def test_clock_moves_on_to_the_next_second() -> None:
    now = [1_714_566_896_999_999_000]
    clock = UtcIsoClock(time_ns=lambda: now[0])
    assert clock() == "2024-05-01T12:34:56.999999Z"
    now[0] += 2_000
    assert clock() == "2024-05-01T12:34:57.000001Z"


def test_real_clock_is_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stamped = datetime.fromisoformat(UtcIsoClock()())
    assert before <= stamped <= datetime.now(UTC)


def test_add_request_id_processor() -> None:
    assert add_request_id(None, "info", {"event": "x"}) == {"event": "x"}
    token = bind_request_id("req-9")
    try:
        assert current_request_id() == "req-9"
        assert add_request_id(None, "info", {"event": "x"}) == {"event": "x", "request_id": "req-9"}
        # An id already in the event (bound by the app in structlog's context) is kept.
        kept = add_request_id(None, "info", {"event": "x", "request_id": "own"})
        assert kept["request_id"] == "own"
    finally:
        reset_request_id(token)
    assert current_request_id() is None


def test_standard_library_lines_carry_the_request_id(
    setup: LoggingSetup, stream: io.StringIO
) -> None:
    token = bind_request_id("req-std")
    try:
        logging.getLogger("third.party").warning("hello %s", "there")
    finally:
        reset_request_id(token)
    [line] = [orjson.loads(line) for line in pop_lines(stream)]
    assert (line["event"], line["request_id"]) == ("hello there", "req-std")


@pytest.mark.parametrize(
    ("registry", "context"),
    [
        ({}, {}),  # no structlog context variable yet: the merge is skipped
        (None, {}),  # structlog without the registry: always merge
        (None, {"user": "u-2"}),
    ],
)
def test_json_line_logger_with_and_without_structlogs_registry(
    setup: LoggingSetup,
    stream: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    registry: dict[str, Any] | None,
    context: dict[str, Any],
) -> None:
    monkeypatch.setattr(json_lines, "_structlog_context_vars", registry)
    chain = setup.direct_logger("lockstep.access")
    fast = setup.access_logger("lockstep.access")
    token = bind_request_id("req-2")
    structlog.contextvars.bind_contextvars(**context)
    try:
        chain.info("request", method="GET", route="/", path="/", status=200, duration_ms=1.0)
        fast.request("GET", "/", "/", 200, 1.0)
        fast.info("request", method="GET", route="/", path="/", status=200, duration_ms=1.0)
    finally:
        structlog.contextvars.clear_contextvars()
        reset_request_id(token)
    expected, positional, keywords = (without_timestamp(line) for line in pop_lines(stream))
    assert positional == expected
    assert keywords == expected
