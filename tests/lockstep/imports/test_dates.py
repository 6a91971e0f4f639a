"""Dates as banks write them; the day/month order decided per file, never per cell."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.imports.dates import DMY, MDY, date_parser, decide_order, read


@pytest.mark.parametrize(
    ("raw", "order", "date"),
    [
        ("2026-03-01", None, dt.date(2026, 3, 1)),
        ("20260301", None, dt.date(2026, 3, 1)),
        ("01.03.2026", DMY, dt.date(2026, 3, 1)),
        ("01.03.26", None, dt.date(2026, 3, 1)),  # dotted dates are day-first: no question
        ("3/1/26", MDY, dt.date(2026, 3, 1)),
        ("3/1/26", DMY, dt.date(2026, 1, 3)),
        ("06 May 2020", None, dt.date(2020, 5, 6)),
        ("23-Jan-15", None, dt.date(2015, 1, 23)),
        ("Jan 23, 2015", None, dt.date(2015, 1, 23)),
        ("1. März 2026", None, dt.date(2026, 3, 1)),
        ("12 févr. 2026", None, dt.date(2026, 2, 12)),
        ("3 dic 2025", None, dt.date(2025, 12, 3)),
        ("15-out-2025", None, dt.date(2025, 10, 15)),
        ("2020-05-06T14:33:00Z", None, dt.date(2020, 5, 6)),
        ("06/05/2020 14:33", DMY, dt.date(2020, 5, 6)),
        ("2025-09-02 08:01:13", None, dt.date(2025, 9, 2)),
    ],
)
def test_cells_read_under_the_files_order(raw: str, order: str | None, date: dt.date) -> None:
    assert date_parser(order)(raw) == date


@pytest.mark.parametrize(
    ("raw", "order", "reason"),
    [
        ("01/13/2026", DMY, "no date in the file's order"),
        ("05/06/2026", None, "whose order the file never shows"),  # never guessed
        ("2026-02-30", DMY, "no date in any"),
        ("Total", DMY, "is not a date"),
    ],
)
def test_cells_that_do_not_fit_are_refused(raw: str, order: str | None, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        date_parser(order)(raw)


def test_the_order_is_decided_from_all_cells_and_ambiguity_is_said() -> None:
    assert decide_order(["01/02/2026", "05/06/2026"]).ambiguous
    assert decide_order(["01/02/2026", "13/06/2026"]).order == DMY
    assert decide_order(["01/02/2026", "06/13/2026"]).order == MDY
    assert decide_order(["2026-01-02", "03 Jan 2026"]) == decide_order([])  # nothing to decide
    conflict = decide_order(["01/13/2026", "13/06/2026", "14/06/2026"])
    assert (conflict.order, conflict.conflicting) == (DMY, True)


@st.composite
def written(draw: st.DrawFn) -> tuple[dt.date, str, str]:
    date = draw(st.dates(dt.date(1970, 1, 1), dt.date(2068, 12, 31)))
    order = draw(st.sampled_from((DMY, MDY)))
    sep = draw(st.sampled_from(("/", "-", ".") if order == DMY else ("/", "-")))
    year = f"{date.year}" if draw(st.booleans()) else f"{date.year % 100:02d}"
    first, second = (date.day, date.month) if order == DMY else (date.month, date.day)
    return date, order, f"{first:02d}{sep}{second:02d}{sep}{year}"


@given(st.lists(written(), min_size=1, max_size=30))
def test_a_file_is_decided_right_or_asked_never_misread(
    cases: list[tuple[dt.date, str, str]],
) -> None:
    order = cases[0][1]
    mine = [(d, c) for d, o, c in cases if o == order]
    decided = decide_order([c for _, c in mine])
    proving = any(d.day > 12 and d.day != d.month for d, _ in mine)
    dotted = any("." in c for _, c in mine)
    if proving or dotted:
        assert decided.order == order
    else:
        assert decided.ambiguous or all(d.day == d.month for d, _ in mine)
    if decided.order is not None:
        parse = date_parser(decided.order)
        assert [parse(c) for _, c in mine] == [d for d, _ in mine]
    for date, cell in mine:
        reading = read(cell)
        assert reading is not None
        assert date in (d for _, d in reading.by_order)
