"""How long a failed job waits before its next attempt: exponential, jittered, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass

from lockstep.exceptions import ConfigurationError


@dataclass(frozen=True, slots=True)
class Backoff:
    """``base * factor ** (attempt - 1)`` seconds, spread by ±``jitter`` and never above ``cap``.

    ``attempt`` is the attempt that just failed (1 for the first run). Jitter spreads the
    retries of jobs that failed together (an outage) so they do not come back in one wave.
    ``Backoff(base=0)`` retries at once. Raises :class:`ConfigurationError` on negative values
    or a jitter outside ``[0, 1]``.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.factor < 1:
            raise ConfigurationError("Backoff needs base >= 0, cap >= 0 and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError("Backoff jitter is a fraction between 0 and 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (>= 1); within
        ``[0, cap]``, and within ±jitter of the un-jittered exponential value."""
        attempt = max(attempt, 1)
        # Cap before exponentiating far: factor ** 2000 overflows a float.
        exponent = min(attempt - 1, 1000)
        try:
            raw = self.base * self.factor**exponent
        except OverflowError:
            raw = self.cap
        raw = min(raw, self.cap)
        if self.jitter:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            raw *= 1 + spread
        return max(0.0, min(raw, self.cap))
