"""How one attempt ended, as the worker reports it to the store (pure values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OutcomeKind = Literal["succeeded", "result", "retry", "failed", "snoozed", "aborted", "released"]

ERROR_CHARS = 4_000
TRACEBACK_CHARS = 32_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one attempt.

    * ``succeeded``: done; ``result`` (JSON text) kept for ``result_ttl`` seconds if > 0.
    * ``result``: the job was already marked succeeded in the handler's fenced transaction;
      only store the result.
    * ``retry``: failed, run again after ``delay`` seconds; ``failed``: failed for good.
    * ``snoozed``: run again after ``delay`` without spending the attempt.
    * ``aborted``: stopped on request while running.
    * ``released``: handed back unfinished at shutdown, attempt not spent.
    """

    kind: OutcomeKind
    result: str | None = None
    result_ttl: float = 0.0
    delay: float = 0.0
    reason: str | None = None
    error: str | None = None
    traceback: str | None = None

    @classmethod
    def failure(
        cls, *, final: bool, reason: str, error: str, traceback: str | None, delay: float
    ) -> Outcome:
        return cls(
            kind="failed" if final else "retry",
            reason=reason,
            error=error[:ERROR_CHARS],
            traceback=traceback[-TRACEBACK_CHARS:] if traceback else None,
            delay=delay,
        )
