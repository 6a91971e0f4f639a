"""Readiness checks: named async probes run concurrently, each bounded by a timeout.

A check is any ``async def check() -> None`` that raises when its dependency is not usable
(``Database.ping`` is one). :func:`run_checks` never raises for a failing check: it reports
``"fail: <ExceptionType>"`` for it, so one broken dependency cannot hide the state of others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from lockstep.types import HealthStatus

log = structlog.get_logger("lockstep.health")

Check = Callable[[], Awaitable[object]]
"""A readiness probe: returns when the dependency is usable, raises when it is not."""

DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Readiness:
    """The outcome of one round of checks: ``results[name]`` is ``"ok"`` or ``"fail: <Type>"``."""

    results: Mapping[str, str]

    @property
    def status(self) -> HealthStatus:
        return "ok" if not self.failing else "fail"

    @property
    def ok(self) -> bool:
        return not self.failing

    @property
    def failing(self) -> list[str]:
        """Names of the checks that failed, in the order they were declared."""
        return [name for name, result in self.results.items() if result != "ok"]


async def _run_one(name: str, check: Check, seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            await check()
    except Exception as exc:  # a failing dependency is a result here, not an error
        # The type only: messages of driver errors can carry host names and user names.
        log.warning("readiness_check_failed", check=name, error=type(exc).__name__)
        return f"fail: {type(exc).__name__}"
    return "ok"


async def run_checks(checks: Mapping[str, Check], seconds: float = DEFAULT_TIMEOUT) -> Readiness:
    """Run every check concurrently; each that raises or takes longer than ``seconds`` fails.

    Returns after about ``seconds`` at most. Cancellation propagates.
    """
    names = list(checks)
    outcomes = await asyncio.gather(*(_run_one(n, checks[n], seconds) for n in names))
    return Readiness(dict(zip(names, outcomes, strict=True)))
