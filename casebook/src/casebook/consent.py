"""Whether a subject's data may be processed on a given day: the one decision the API, the
UI and the case report share.

A consent record holds on the days ``granted_on <= day``, before its ``expires_on`` (the
first day it no longer holds; none: open-ended) and before its ``revoked_on`` (the first day
it no longer holds: a revocation takes effect on the day it is recorded for). A subject's
status on a day is:

* ``valid``: at least one record holds that day;
* ``none``: no record had been granted by that day (a record granted later does not count);
* ``revoked`` / ``expired``: records had been granted, none holds; the one that ended last
  says why (when a record was both revoked and expired, the earlier of the two ended it; a
  revocation on the day of expiry counts as a revocation).

Pure: no database, no clock. Callers pass the day (usually today, in UTC).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class ConsentStatus(enum.StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    NONE = "none"


class ConsentFacts(Protocol):
    """What the decision reads of a record (a ``ConsentRecord`` row has it)."""

    @property
    def granted_on(self) -> dt.date: ...
    @property
    def expires_on(self) -> dt.date | None: ...
    @property
    def revoked_on(self) -> dt.date | None: ...


@dataclass(frozen=True)
class Consent:
    """A subject's status on ``day``; ``until`` is the first day the status ends when it
    is ``valid`` and something ends it (the latest end of the records holding; None:
    open-ended), or the day it ended otherwise (None for ``none``)."""

    status: ConsentStatus
    until: dt.date | None


def ends_on(record: ConsentFacts) -> tuple[dt.date | None, ConsentStatus]:
    """The first day ``record`` no longer holds (None: never) and why."""
    revoked, expires = record.revoked_on, record.expires_on
    if revoked is not None and (expires is None or revoked <= expires):
        return revoked, ConsentStatus.REVOKED
    if expires is not None:
        return expires, ConsentStatus.EXPIRED
    return None, ConsentStatus.VALID


def holds_on(record: ConsentFacts, day: dt.date) -> bool:
    end, _ = ends_on(record)
    return record.granted_on <= day and (end is None or day < end)


def consent_on(records: Iterable[ConsentFacts], day: dt.date) -> Consent:
    """The subject's consent status on ``day`` given all its records (any order)."""
    started = [r for r in records if r.granted_on <= day]
    if not started:
        return Consent(ConsentStatus.NONE, None)
    holding = [r for r in started if holds_on(r, day)]
    if holding:
        ends = [ends_on(r)[0] for r in holding]
        return Consent(ConsentStatus.VALID, None if None in ends else max(e for e in ends if e))
    # Every started record has ended by ``day``: the latest end says why (revoked first).
    ended = [ends_on(r) for r in started]
    last = max(end for end, _ in ended if end is not None)
    why = [status for end, status in ended if end == last]
    return Consent(ConsentStatus.REVOKED if ConsentStatus.REVOKED in why else why[0], last)


def consent_status(records: Iterable[ConsentFacts], day: dt.date) -> ConsentStatus:
    """:func:`consent_on`'s status alone (for the PDF report and markers)."""
    return consent_on(records, day).status
