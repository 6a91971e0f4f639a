"""casebook.consent's decision over arbitrary records and days (hypothesis), and the IBAN
checks accounts rely on: pure functions, no database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from casebook.consent import ConsentStatus, consent_on, consent_status, holds_on
from casebook.iban import iban_is_valid, looks_like_iban, mask

EPOCH = dt.date(2024, 1, 1)


@dataclass(frozen=True)
class Record:
    granted_on: dt.date
    expires_on: dt.date | None
    revoked_on: dt.date | None


days = st.integers(min_value=0, max_value=60).map(lambda n: EPOCH + dt.timedelta(days=n))


@st.composite
def records(draw: st.DrawFn) -> Record:
    granted = draw(days)
    expires = draw(st.none() | st.integers(1, 30).map(lambda n: granted + dt.timedelta(days=n)))
    revoked = draw(st.none() | st.integers(0, 30).map(lambda n: granted + dt.timedelta(days=n)))
    return Record(granted, expires, revoked)


def reference(rs: list[Record], day: dt.date) -> ConsentStatus:
    """The rule written out day by day, the way a person would check it."""
    started = [r for r in rs if r.granted_on <= day]
    if not started:
        return ConsentStatus.NONE
    for r in started:
        stop = [d for d in (r.expires_on, r.revoked_on) if d is not None]
        if not stop or day < min(stop):
            return ConsentStatus.VALID
    last_end = max(min(d for d in (r.expires_on, r.revoked_on) if d is not None) for r in started)
    for r in started:
        revoked = r.revoked_on is not None and r.revoked_on == last_end
        if revoked and (r.expires_on is None or last_end <= r.expires_on):
            return ConsentStatus.REVOKED
    return ConsentStatus.EXPIRED


@given(st.lists(records(), max_size=5), days)
def test_the_status_follows_the_rule(rs: list[Record], day: dt.date) -> None:
    assert consent_status(rs, day) == reference(rs, day)


@given(st.lists(records(), max_size=5), days, st.randoms())
def test_the_order_of_the_records_does_not_matter(
    rs: list[Record], day: dt.date, rng: object
) -> None:
    shuffled = list(rs)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert consent_on(shuffled, day) == consent_on(rs, day)


@given(st.lists(records(), max_size=5), records(), days)
def test_another_record_never_takes_validity_away(
    rs: list[Record], extra: Record, day: dt.date
) -> None:
    if consent_status(rs, day) is ConsentStatus.VALID:
        assert consent_status([*rs, extra], day) is ConsentStatus.VALID


@given(records(), days)
def test_one_record_is_valid_exactly_on_its_days(record: Record, day: dt.date) -> None:
    status = consent_status([record], day)
    assert (status is ConsentStatus.VALID) == holds_on(record, day)
    if day < record.granted_on:
        assert status is ConsentStatus.NONE
    decided = consent_on([record], day)
    if status is ConsentStatus.VALID and decided.until is not None:
        assert not holds_on(record, decided.until)  # ``until`` is the first day it ended
        assert holds_on(record, decided.until - dt.timedelta(days=1))


def test_worked_examples() -> None:
    jan = dt.date(2026, 1, 1)
    granted = Record(jan, dt.date(2026, 7, 1), None)
    assert consent_status([], jan) is ConsentStatus.NONE
    assert consent_status([granted], jan) is ConsentStatus.VALID
    assert consent_status([granted], dt.date(2026, 6, 30)) is ConsentStatus.VALID
    assert consent_status([granted], dt.date(2026, 7, 1)) is ConsentStatus.EXPIRED
    revoked = Record(jan, dt.date(2026, 7, 1), dt.date(2026, 3, 1))
    assert consent_status([revoked], dt.date(2026, 2, 28)) is ConsentStatus.VALID
    assert consent_status([revoked], dt.date(2026, 3, 1)) is ConsentStatus.REVOKED
    assert consent_status([revoked], dt.date(2026, 9, 1)) is ConsentStatus.REVOKED
    # Expired first, then a later one revoked: the later end says why.
    assert consent_status(
        [granted, Record(jan, None, dt.date(2026, 8, 1))], dt.date(2026, 9, 1)
    ) is (ConsentStatus.REVOKED)
    assert consent_on([granted], jan).until == dt.date(2026, 7, 1)
    assert consent_on([granted, Record(jan, None, None)], jan).until is None


def test_ibans() -> None:
    assert iban_is_valid("DE89 3704 0044 0532 0130 00")
    assert iban_is_valid("gb82west12345698765432")
    assert iban_is_valid("FR14 2004 1010 0505 0001 3M02 606")
    assert not iban_is_valid("DE88 3704 0044 0532 0130 00")
    assert not iban_is_valid("DE89 3704 0044 0532 0130 0")
    assert not iban_is_valid("DE89-3704-0044-0532-0130-00!")
    assert looks_like_iban("DE89 3704 0044 0532 0130 00")
    assert not looks_like_iban("12345678")
    assert not looks_like_iban("AB12")
    assert mask("DE89 3704 0044 0532 0130 00") == "****3000"
    assert mask("1234") == "****"
