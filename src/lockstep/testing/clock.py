"""A clock tests move by hand, for anything in lockstep that takes a ``clock`` callable."""

from __future__ import annotations

import datetime as dt


class FakeClock:
    """Callable like ``time.monotonic``; returns ``start`` until :meth:`advance` moves it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, by: dt.timedelta | float) -> None:
        seconds = by.total_seconds() if isinstance(by, dt.timedelta) else float(by)
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds
