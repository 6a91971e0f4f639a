"""Cell parsers: what each accepts, what it refuses and why."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.imports import parsers


@pytest.mark.parametrize(
    ("raw", "cents"),
    [
        ("1234", 123_400),
        ("1234.5", 123_450),
        ("-12.30", -1_230),
        ("+0.99", 99),
        ("  7.25 ", 725),
        (".5", 50),
        ("-12,30", -1_230),
        ("1,234.56", 123_456),
        ("1.234,56", 123_456),
        ("1 234,56", 123_456),
        ("1\u00a0234,56", 123_456),
        ("1.234.567", 123_456_700),
        ("1,234", 123_400),
        ("12.345", 1_234_500),  # three digits after one separator group thousands
    ],
)
def test_cents_accepts_the_usual_spellings(raw: str, cents: int) -> None:
    assert parsers.cents()(raw) == cents


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "is not an amount"),
        ("abc", "is not an amount"),
        ("1.2.3", "is not an amount"),
        ("1.2345", "more than two decimals"),
        ("--1", "is not an amount"),
        ("12.", "is not an amount"),
        ("²", "is not an amount"),
    ],
)
def test_cents_refuses_what_it_would_have_to_guess(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parsers.cents()(raw)


def test_cents_has_a_limit() -> None:
    assert parsers.cents(max_abs=10_000)("-100") == -10_000
    with pytest.raises(ValueError, match="too large"):
        parsers.cents(max_abs=10_000)("100.01")


@given(st.integers(-(10**12), 10**12))
def test_cents_reads_back_what_a_ledger_writes(amount: int) -> None:
    sign = "-" if amount < 0 else ""
    whole, rest = divmod(abs(amount), 100)
    parse = parsers.cents()
    assert parse(f"{sign}{whole}.{rest:02d}") == amount
    assert parse(f"{sign}{whole},{rest:02d}") == amount
    if rest % 10 == 0:
        assert parse(f"{sign}{whole}.{rest // 10}") == amount


def test_dates_integers_decimals_choices_booleans() -> None:
    assert parsers.date()("2026-01-31") == dt.date(2026, 1, 31)
    assert parsers.date()("31.01.2026") == parsers.date()("31/01/2026") == dt.date(2026, 1, 31)
    with pytest.raises(ValueError, match="is not a date"):
        parsers.date()("2026-02-30")
    assert parsers.integer(minimum=0)(" 12 ") == 12
    with pytest.raises(ValueError, match="is below 0"):
        parsers.integer(minimum=0)("-1")
    assert parsers.decimal(places=1)("2.5") == Decimal("2.5")
    with pytest.raises(ValueError, match="more than 1 decimals"):
        parsers.decimal(places=1)("2.55")
    assert parsers.choice({"dr": "debit", "debit": "debit"})(" DR ") == "debit"
    with pytest.raises(ValueError, match="is not one of debit, dr"):
        parsers.choice({"dr": "debit", "debit": "debit"})("x")
    assert parsers.boolean()("Yes") is True
    assert parsers.boolean()("0") is False
    with pytest.raises(ValueError, match="yes/no"):
        parsers.boolean()("maybe")
    with pytest.raises(ValueError, match="longer than 3"):
        parsers.text(3)("abcd")
