"""Amounts as banks write them; the decimal mark decided per file, never per cell."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.imports.numbers import COMMA, DOT, amount_parser, decide_decimal, evidence, split


@pytest.mark.parametrize(
    ("raw", "mark", "cents"),
    [
        ("$1,036.47", DOT, 103_647),
        ("-123,45 €", COMMA, -12_345),
        ("11'373.94", DOT, 1_137_394),
        ("11\u2019373.94", DOT, 1_137_394),
        ("CHF 1'234.50", DOT, 123_450),
        ("(12.50)", DOT, -1_250),
        ("12.50-", DOT, -1_250),
        ("\u22125,00", COMMA, -500),
        ("5 DR", DOT, -500),
        ("5.00 CR", DOT, 500),
        ("EUR -5", DOT, -500),
        ("1 234,56", COMMA, 123_456),
        ("1\u00a0234,56", COMMA, 123_456),
        ("1.234.567,8", COMMA, 123_456_780),
        ("12.345", COMMA, 1_234_500),  # in a comma-decimal file, twelve thousand
        ("12.3400", DOT, 1_234),  # trailing zeros below a cent are no precision lost
        ("R$ 1.500,00", COMMA, 150_000),
        ("-62,3", COMMA, -6_230),
        ("200", COMMA, 20_000),
        (".5", DOT, 50),
    ],
)
def test_cells_read_under_the_files_mark(raw: str, mark: str, cents: int) -> None:
    assert amount_parser(mark)(raw) == cents


@pytest.mark.parametrize(
    ("raw", "mark", "reason"),
    [
        ("12.345", DOT, "fractions of a cent"),  # never twelve thousand in a dot file
        ("0.001", DOT, "fractions of a cent"),
        ("1.234,56", DOT, "does not use '.'"),
        ("1,23,456.00", DOT, "misplaced thousands"),
        ("abc", DOT, "is not an amount"),
        ("=1+2", DOT, "is not an amount"),
        ("1.50", None, "a separator the file's other amounts never use"),
    ],
)
def test_cells_that_do_not_fit_the_file_are_refused_with_a_reason(
    raw: str, mark: str | None, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        amount_parser(mark)(raw)


@pytest.mark.parametrize(
    ("cells", "mark", "ambiguous"),
    [
        (["12.345", "1,500"], None, True),  # every cell reads both ways: ask
        (["12.345", "1,234.56"], DOT, False),  # one cell settles it for the file
        (["12.345", "0,50"], COMMA, False),
        (["0.001"], DOT, False),  # 0.001 cannot be a thousands group
        (["1234.567"], DOT, False),
        (["100", "-5"], None, False),  # no separators: nothing to decide
    ],
)
def test_the_decimal_mark_is_decided_from_all_cells(
    cells: list[str], mark: str | None, ambiguous: bool
) -> None:
    decided = decide_decimal(cells)
    assert (decided.mark, decided.ambiguous) == (mark, ambiguous)


def test_cells_proving_both_marks_are_a_conflict_the_majority_decides() -> None:
    decided = decide_decimal(["1,50", "2,75", "1,234.56"])
    assert (decided.mark, decided.conflicting, decided.counts) == (COMMA, True, (1, 2))


GROUPS = {DOT: ("", ",", " ", "'", "\u00a0"), COMMA: ("", ".", " ", "\u00a0")}


@st.composite
def written(draw: st.DrawFn) -> tuple[int, str, str]:
    """(cents, the file's mark, the cell) as some bank would write it."""
    cents = draw(st.integers(-(10**11), 10**11))
    mark = draw(st.sampled_from((DOT, COMMA)))
    group = draw(st.sampled_from(GROUPS[mark]))
    whole, fraction = divmod(abs(cents), 100)
    digits = f"{whole:,}".replace(",", group)
    body = f"{digits}{mark}{fraction:02d}"
    negative = ("-{}", "{}-", "({})", "-{} €", "$ -{}", "\u2212{}", "{} DR", "EUR -{}")
    positive = ("{}", "+{}", "{} EUR", "€{}", "{} CR")
    cell = draw(st.sampled_from(negative if cents < 0 else positive)).format(body)
    return cents, mark, cell


@given(written())
def test_any_written_amount_reads_back_under_its_mark(case: tuple[int, str, str]) -> None:
    cents, mark, cell = case
    assert amount_parser(mark)(cell) == cents
    parts = split(cell)
    assert parts is not None
    assert evidence(parts.body) in (mark, None)  # a cell never proves the wrong mark


@given(st.lists(written(), min_size=1, max_size=20))
def test_a_file_is_never_decided_against_its_mark(cases: list[tuple[int, str, str]]) -> None:
    mark = cases[0][1]
    cells = [c for _, m, c in cases if m == mark]
    decided = decide_decimal(cells)
    assert decided.mark in (mark, None)
    assert decided.mark == mark or not any(
        evidence(split(c).body)
        for c in cells  # type: ignore[union-attr]
    )
