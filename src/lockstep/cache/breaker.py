"""A circuit breaker for the cache backend: stop waiting for a Redis that does not answer.

Guarantees (each has a test):

* ``failures`` consecutive failed calls (timeouts, connection errors, error replies) open
  it; any success in between starts the count again.
* While open, :meth:`CircuitBreaker.call` raises :class:`CircuitOpenError` at once, without
  any I/O: requests are served from the database instead of each waiting out a timeout.
* ``open_seconds`` after opening it is half-open: exactly one call (the probe) is let
  through at a time; its success closes the breaker, its failure opens it again for another
  ``open_seconds``. A cancelled probe neither closes nor opens it: the next call probes.
* :attr:`CircuitBreaker.failing_since` is when the earliest call of the current run of
  failures was *started* (None after a success): the writer's hold is computed from it.

Pure bookkeeping over an injectable clock; the only awaiting is the wrapped call's own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from lockstep.exceptions import CacheUnavailableError

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]

STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitOpenError(CacheUnavailableError):
    """The cache backend failed repeatedly; calls fail fast until a probe succeeds."""


class CircuitBreaker:
    """Counts consecutive failures of one backend (see the module docstring)."""

    def __init__(
        self,
        *,
        failures: int = 3,
        open_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or open_seconds <= 0:
            raise ValueError("failures must be >= 1 and open_seconds > 0")
        self.failures = failures
        self.open_seconds = open_seconds
        self.clock = clock
        self.on_change: Callable[[State], None] | None = None
        self.on_reject: Callable[[], None] | None = None
        self._state: State = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False
        self.failing_since: float | None = None

    @property
    def state(self) -> State:
        """``closed``, ``open``, or ``half_open`` (open, and ``open_seconds`` have passed)."""
        if self._state == "open" and self.clock() - self._opened_at >= self.open_seconds:
            self._set("half_open")
        return self._state

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` if the breaker admits it, recording the outcome.

        Raises :class:`CircuitOpenError` without calling ``fn`` while open (or while another
        call is probing), and re-raises whatever ``fn`` raised after counting it.
        """
        probe = self._admit()
        started = self.clock()
        try:
            result = await fn()
        except Exception:
            self.failed(started)
            raise
        except BaseException:  # cancelled: no verdict on the backend
            if probe:
                self._probing = False
            raise
        self.succeeded()
        return result

    def _admit(self) -> bool:
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        if self.on_reject is not None:
            self.on_reject()
        raise CircuitOpenError(
            "the cache backend is not answering; serving from the database until it does"
        )

    def succeeded(self) -> None:
        """Record a call that worked: the run of failures ends, a probe closes it."""
        self._consecutive = 0
        self._probing = False
        self.failing_since = None
        if self._state != "closed":
            self._set("closed")

    def failed(self, started: float) -> None:
        """Record a call started at ``started`` (this breaker's clock) that failed."""
        self._consecutive += 1
        if self.failing_since is None or started < self.failing_since:
            self.failing_since = started
        if self._probing or self._consecutive >= self.failures:
            self.trip(started)
        self._probing = False

    def trip(self, since: float | None = None) -> None:
        """Open now, on evidence other than a call: a heartbeat sent at ``since`` (this
        breaker's clock; default now) that was never answered."""
        self._opened_at = self.clock()
        since = self._opened_at if since is None else since
        if self.failing_since is None or since < self.failing_since:
            self.failing_since = since
        if self._state != "open":
            self._set("open")

    def _set(self, state: State) -> None:
        self._state = state
        if self.on_change is not None:
            self.on_change(state)


def hold_seconds(failing_since: float | None, lease: float, now: float) -> float:
    """How long a writer whose stamp bump failed must still wait before answering.

    Every other process trusts its local mirror only for ``lease`` seconds after Redis last
    proved the mirror complete. A bump that fails is part of a run of failures that began at
    ``failing_since``; Redis stopped answering no later than that, so once ``lease`` seconds
    have passed since then no mirror still trusts what it held before the failure, and the
    writer's response can no longer be followed by a stale hit from a mirror.
    """
    if failing_since is None:
        return 0.0
    return max(0.0, failing_since + lease - now)
