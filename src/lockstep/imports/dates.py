"""Dates as banks write them, and which day/month order a file uses.

A cell is read into a year, a month and a day whatever its separators (``2026-03-01``,
``01.03.2026``, ``3/1/26``, ``20260301``, ``06 May 2020``, ``23-Jan-15``, ``Jan 23, 2015``,
``2020-05-06T14:33:00Z``, ``06/05/2020 14:33``: a time is dropped). Month names are known
in English, German, French, Spanish, Italian, Dutch and Portuguese.

The order of a numeric day and month is decided **per file, from all its date cells**
(:func:`decide_order`): every cell rules out the orders under which it is no date
(``13/01/2026`` rules out month-first). When every cell fits both (every day is 12 or
less) the file is *ambiguous*: the caller must ask, never guess. Year-first and
month-name cells fit any order and decide nothing; dotted numeric dates (``01.03.2026``)
are day-first (no country writes month.day.year). Two-digit years are 1969-2068.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from lockstep.imports.parsers import Parser

DMY, MDY = "dmy", "mdy"
ORDERS = (DMY, MDY)

_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    [
        "january jan januar janv janvier enero ene gennaio gen januari janeiro",
        "february feb februar fev fevr fevrier febrero febbraio februari fevereiro",
        "march mar marz mrz maerz mars marzo mrt maart marco",
        "april apr avr avril abril abr aprile",
        "may mai mayo maggio mag mei maio",
        "june jun juni juin junio giugno giu juno junho",
        "july jul juli juil juillet julio luglio lug julho",
        "august aug augustus aout agosto ago",
        "september sep sept septembre septiembre settembre set setembro",
        "october oct okt oktober octobre octubre ottobre ott out outubro",
        "november nov novembre noviembre novembro",
        "december dec dez dezember decembre dic diciembre dicembre dezembro",
    ],
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name] = _number

_TIME = (  # a time after the date, dropped: 14:33, 14.33.05,123, 2:33 PM, Z, +01:00, CET
    r"(?:[T ,]+\d{1,2}[:.]\d{2}(?:[:.]\d{2}(?:[.,]\d+)?)?\s*(?:[AaPp][Mm])?"
    r"\s*(?:Z|[+-]\d{2}:?\d{2}|[A-Z]{3,4})?)?"
)
_YMD = re.compile(rf"^(\d{{4}})[-/.](\d{{1,2}})[-/.](\d{{1,2}}){_TIME}$")
_COMPACT = re.compile(r"^((?:19|20)\d{2})(\d{2})(\d{2})$")
_NUMERIC = re.compile(rf"^(\d{{1,2}})[-/. ](\d{{1,2}})[-/. ](\d{{4}}|\d{{2}}){_TIME}$")
_NAME_MIDDLE = re.compile(rf"^(\d{{1,2}})\.?[-/. ]+([^\W\d_]+)\.?[-/. ,]+(\d{{4}}|\d{{2}}){_TIME}$")
_NAME_FIRST = re.compile(
    rf"^([^\W\d_]+)\.?[-/. ]+(\d{{1,2}})(?:st|nd|rd|th)?,?[-/. ]+(\d{{4}}|\d{{2}}){_TIME}$"
)
_YEAR_NAME = re.compile(rf"^(\d{{4}})[-/. ]([^\W\d_]+)[-/. ](\d{{1,2}}){_TIME}$")


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if year < 69 else 1900
    return year


def _month(name: str) -> int | None:
    plain = unicodedata.normalize("NFKD", name.lower())
    return _MONTHS.get("".join(c for c in plain if not unicodedata.combining(c)))


def _valid(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Reading:
    """What a cell can be: one date whatever the order (``fixed``), or the date under each
    order it fits (``by_order``; empty when it fits none)."""

    fixed: dt.date | None = None
    by_order: tuple[tuple[str, dt.date], ...] = ()

    def orders(self) -> frozenset[str]:
        return frozenset(ORDERS) if self.fixed else frozenset(o for o, _ in self.by_order)


def read(raw: str) -> Reading | None:
    """How ``raw`` reads as a date; None when it is not shaped like one at all."""
    value = raw.strip()
    if not value:
        return None
    if len(value) >= 10 and value[4] == "-":
        match = _YMD.match(value)
        if match:
            return Reading(fixed=_valid(*map(int, match.groups()[:3])))
    for pattern in (_YMD, _COMPACT):
        match = pattern.match(value)
        if match:
            return Reading(fixed=_valid(*map(int, match.groups()[:3])))
    match = _NUMERIC.match(value)
    if match:
        first, second, year = int(match[1]), int(match[2]), _year(match[3])
        fits: tuple[tuple[str, dt.date | None], ...] = (
            (DMY, _valid(year, second, first)),
            (MDY, _valid(year, first, second)),
        )
        if "." in value[:6]:
            fits = fits[:1]  # 01.03.2026: dotted dates are day-first wherever they are written
        return Reading(by_order=tuple((o, d) for o, d in fits if d is not None))
    for pattern, day_at, name_at, year_at in (
        (_NAME_MIDDLE, 1, 2, 3),
        (_NAME_FIRST, 2, 1, 3),
        (_YEAR_NAME, 3, 2, 1),
    ):
        match = pattern.match(value)
        if match:
            month = _month(match[name_at])
            if month is None:
                return None
            return Reading(fixed=_valid(_year(match[year_at]), month, int(match[day_at])))
    return None


def is_date(raw: str) -> bool:
    reading = read(raw)
    return reading is not None and bool(reading.orders())


@dataclass(frozen=True, slots=True)
class OrderDecision:
    """What a file's date cells say about day/month order. ``order`` is None when they do
    not say (``ambiguous``) or need no decision (no numeric day/month cell)."""

    order: str | None
    ambiguous: bool
    conflicting: bool = False
    counts: tuple[int, int] = (0, 0)  # cells fitting day-first, month-first


def decide_order(cells: Iterable[str]) -> OrderDecision:
    """The day/month order of a file, from all its date cells. When no order fits every
    cell (``conflicting``) the one fitting more wins; the others are refused row by row."""
    dmy = mdy = numeric = 0
    for raw, count in Counter(cells).items():  # each distinct text read once
        reading = read(raw)
        if reading is None or reading.fixed is not None or not reading.by_order:
            continue
        numeric += count
        orders = reading.orders()
        dmy += count * (DMY in orders)
        mdy += count * (MDY in orders)
    if not numeric:
        return OrderDecision(None, False)
    if dmy == mdy == numeric:
        return OrderDecision(None, True, False, (dmy, mdy))
    order = DMY if dmy >= mdy else MDY
    return OrderDecision(order, False, min(dmy, mdy) < numeric and max(dmy, mdy) < numeric,
                         (dmy, mdy))  # fmt: skip


def date_parser(order: str | None) -> Parser:
    """A cell's date, numeric day and month read in ``order`` (None: the file has no such
    cells, so one is refused as ambiguous)."""

    def parse(raw: str) -> dt.date:
        if len(raw) == 10 and raw[4] == "-":
            try:
                return dt.date.fromisoformat(raw)
            except ValueError:
                pass
        reading = read(raw)
        if reading is None:
            raise ValueError("is not a date")
        if reading.fixed is not None:
            return reading.fixed
        if not reading.by_order:
            raise ValueError("is no date in any day/month order")
        if order is None:
            if len({date for _, date in reading.by_order}) == 1:
                return reading.by_order[0][1]  # 13/01/2026, 01.03.2026, 05/05/2026: one date
            raise ValueError("has a day and month whose order the file never shows")
        for candidate, date in reading.by_order:
            if candidate == order:
                return date
        raise ValueError(f"is no date in the file's order ({_spelled(order)})")

    return parse


def _spelled(order: str) -> str:
    return "day/month/year" if order == DMY else "month/day/year"
