"""Money amounts as banks write them, and which decimal mark a file uses.

The decimal mark is decided **per file, from all its amount cells** (:func:`decide_decimal`),
never per cell: ``12.345`` is twelve thousand in a file that writes ``1.234,56`` and twelve
point three four five in one that writes ``0.50``. A file whose cells never show which mark
they use (every amount looks like ``12.345`` or ``1,500``) is *ambiguous*: the caller must
ask, not guess. A file with no separators at all needs no decision.

:func:`amount_parser` then reads a cell under the decided mark into signed integer cents:
currency symbols and codes around the number (``$1,036.47``, ``-123,45 €``, ``EUR 5``),
grouping by the other mark, spaces or apostrophes (``11'373.94``), signs written ``-5``,
``5-``, ``(5)``, a minus sign, ``5 DR`` / ``5 CR``. Fractions of a cent are refused (the ledger
keeps cents), unless they are zeros (``12.3400``). A cell that does not fit the file's mark
(``1.234,56`` in a dot-decimal file) is refused with a reason, never reinterpreted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from lockstep.imports.parsers import Parser

DOT, COMMA = ".", ","
_SPACES = "\u00a0\u202f\u2009 "
_APOSTROPHES = "'\u2019"
_MINUS = "-\u2212\u2013"
# Currency around a number: ISO codes, symbols, and a few written-out forms.
_CURRENCY = re.compile(
    r"^(?P<pre>[A-Z]{3}|R\$|US\$|[$€£¥₹₩₺₽₪฿₫₴₦₱]|kr\.?|Fr\.?|zł|Kč)?\s*"
    r"(?P<body>.*?)\s*"
    r"(?P<post>[A-Z]{3}|[$€£¥₹₩₺₽₪฿₫₴₦₱]|kr\.?|Fr\.?|zł|Kč)?$"
)
_SYMBOLS = {"$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR",
            "R$": "BRL", "₩": "KRW", "₺": "TRY", "₽": "RUB", "₪": "ILS", "฿": "THB",
            "₫": "VND", "₴": "UAH", "₦": "NGN", "₱": "PHP", "zł": "PLN", "Kč": "CZK"}  # fmt: skip
_BODY = re.compile(r"^\d[\d.,'\u2019\u00a0\u202f\u2009 ]*$|^[.,]\d+$")


@dataclass(frozen=True, slots=True)
class Amount:
    """A cell taken apart: its sign, its digits and separators, the currency written with it."""

    negative: bool
    body: str
    currency: str | None


def split(raw: str) -> Amount | None:
    """The parts of an amount cell, or None when it is not shaped like an amount."""
    value = raw.strip()
    if not value:
        return None
    negative = False
    if value.startswith("(") and value.endswith(")"):
        negative, value = True, value[1:-1].strip()
    upper = value.upper()
    if upper.endswith((" DR", " CR")) or (upper.endswith(("DR", "CR")) and value[-3:-2].isdigit()):
        negative = upper.endswith("DR") or negative
        value = value[:-2].strip()
    if value[:1] in _MINUS or value[:1] == "+":
        negative = negative or value[0] != "+"
        value = value[1:].strip()
    elif value[-1:] in _MINUS:
        negative, value = True, value[:-1].strip()
    match = _CURRENCY.match(value)
    if match is None:
        return None
    body = match["body"]
    if body[:1] in _MINUS:  # € -5,00
        negative, body = True, body[1:].strip()
    elif body[-1:] in _MINUS:
        negative, body = True, body[:-1].strip()
    if not _BODY.match(body):
        return None
    code = match["pre"] or match["post"]
    return Amount(negative, body, _SYMBOLS.get(code, code) if code else None)


def is_amount(raw: str) -> bool:
    return split(raw) is not None


def evidence(body: str) -> str | None:
    """The decimal mark that ``body`` proves (``"."`` or ``","``), or None when it proves
    none: no separator, or one lone separator before exactly three digits (``12.345``)."""
    marks = [c for c in body if c in ".,"]
    if not marks:
        return None
    last = marks[-1]
    if len(set(marks)) == 2:
        return last  # 1.234,56 / 1,234.56: the last one is the decimal mark
    if len(marks) > 1:
        return COMMA if last == DOT else DOT  # repeated: it groups, the other is decimal
    whole, _, fraction = body.rpartition(last)
    digits = whole.translate(_NOT_DIGITS)
    if len(fraction) != 3:
        return last
    if not digits or digits == "0" or len(digits) > 3 or not whole[:1].isdigit():
        return last  # 0.001, .125, 1234.567: cannot be a thousands group
    if any(c in whole for c in _SPACES + _APOSTROPHES):
        return last  # 1 234.567: already grouped by another character
    return None


_NOT_DIGITS = str.maketrans("", "", _SPACES + _APOSTROPHES)


@dataclass(frozen=True, slots=True)
class DecimalDecision:
    """What a file's amount cells say about its decimal mark. ``mark`` is None when they
    do not say (``ambiguous``) or need no mark at all (no cell has a separator)."""

    mark: str | None
    ambiguous: bool
    conflicting: bool = False
    counts: tuple[int, int] = (0, 0)  # cells proving "." and ","


def decide_decimal(cells: Iterable[str]) -> DecimalDecision:
    """The decimal mark of a file, from all its amount cells. When cells prove both marks
    (``conflicting``) the majority wins and the others will be refused row by row."""
    dots = commas = undecided = 0
    for raw, count in Counter(cells).items():  # each distinct text read once
        parts = split(raw)
        if parts is None:
            continue
        mark = evidence(parts.body)
        if mark == DOT:
            dots += count
        elif mark == COMMA:
            commas += count
        elif any(c in parts.body for c in ".,"):
            undecided += count
    if dots or commas:
        mark = DOT if dots >= commas else COMMA
        return DecimalDecision(mark, False, bool(dots and commas), (dots, commas))
    return DecimalDecision(None, undecided > 0, False, (0, 0))


def to_cents(parts: Amount, mark: str) -> int:
    """Signed cents of a split cell under decimal ``mark``; ValueError with a reason."""
    body = parts.body
    whole, point, fraction = body.rpartition(mark) if mark in body else (body, "", "")
    whole = whole or "0"
    if mark in whole:
        raise ValueError(f"has the decimal mark {mark!r} twice")
    groups = set(whole) - set("0123456789")
    if groups:
        group = groups.pop()
        allowed = (COMMA if mark == DOT else DOT) + _SPACES + _APOSTROPHES
        if groups or group not in allowed:
            raise ValueError(f"does not use {mark!r} as its decimal mark, as the file does")
        if not re.fullmatch(rf"\d{{1,3}}({re.escape(group)}\d{{3}})+", whole):
            raise ValueError("has misplaced thousands separators")
        whole = whole.replace(group, "")
    if not whole.isdigit() or (point and not fraction.isdigit()):
        raise ValueError(f"does not use {mark!r} as its decimal mark, as the file does")
    if len(fraction) > 2 and fraction[2:].strip("0"):
        raise ValueError("has fractions of a cent; the ledger keeps whole cents")
    cents = int(whole) * 100 + int((fraction[:2] + "00")[:2])
    return -cents if parts.negative else cents


def amount_parser(mark: str | None, *, max_abs: int = 10**15) -> Parser:
    """Signed integer cents of a cell, the file's decimal mark being ``mark`` (None: no
    amount of the file has a separator, so a cell with one is refused)."""
    decided = mark or DOT

    def parse(raw: str) -> int:
        # The common cell first, with string methods only: 1234, -12.50, 0,99.
        negative = raw[:1] == "-"
        whole, point, fraction = (raw[1:] if negative else raw).partition(decided)
        if whole.isdigit() and (
            not point or (mark is not None and fraction.isdigit() and len(fraction) <= 2)
        ):
            cents = int(whole) * 100 + int((fraction + "00")[:2])
        else:
            parts = split(raw)
            if parts is None:
                raise ValueError("is not an amount")
            if mark is None and any(c in parts.body for c in ".,"):
                raise ValueError("has a separator the file's other amounts never use")
            cents = to_cents(parts, decided)
            negative, cents = cents < 0, abs(cents)
        if cents > max_abs:
            raise ValueError("is too large")
        return -cents if negative else cents

    return parse
