"""Cell parsers: text in, a value out, or ``ValueError`` with a reason a person can act on.

Each factory returns a plain function, so an application composes its own as easily.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Parser = Callable[[str], Any]

_MONEY = re.compile(r"^[+-]?(\d+|\d{1,3}(,\d{3})+|\d{1,3}(\.\d{3})+|\d{1,3}( \d{3})+)?([.,]\d+)?$")
_GROUPED = re.compile(r"^[1-9]\d{0,2}([,. ]\d{3})+$")  # 1,234  1.234.567  12 345


def text(max_length: int, *, allow_empty: bool = False) -> Parser:
    """Stripped text of at most ``max_length`` characters."""

    def parse(raw: str) -> str:
        value = raw.strip()
        if not value and not allow_empty:
            raise ValueError("is empty")
        if len(value) > max_length:
            raise ValueError(f"is longer than {max_length} characters")
        return value

    return parse


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("is not a whole number") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"is below {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"is above {maximum}")
        return value

    return parse


def cents(*, max_abs: int = 10**15) -> Parser:
    """A money amount as integer cents: ``1234.5``, ``-12,30``, ``1,234.56``, ``1.234,56``,
    ``1 234,56``. A lone comma or dot before the last one or two digits is the decimal
    mark; other separators group thousands. More than two decimals is an error, never
    silently rounded."""

    def parse(raw: str) -> int:
        # The common case first, with string methods only: 1234, -12.5, 0.99.
        negative = raw.startswith("-")
        whole, dot, fraction = (raw[1:] if negative or raw.startswith("+") else raw).partition(".")
        if whole.isdecimal() and (not dot or (fraction.isdecimal() and len(fraction) <= 2)):
            amount = int(whole) * 100 + int((fraction + "00")[:2])
            if amount > max_abs:
                raise ValueError("is too large")
            return -amount if negative else amount
        value = raw.strip().replace("\u00a0", " ")
        if not value or not _MONEY.match(value) or not any(c.isdigit() for c in value):
            raise ValueError("is not an amount")
        sign = -1 if value.startswith("-") else 1
        digits = value.lstrip("+-")
        whole, fraction = digits, ""
        last = max(digits.rfind("."), digits.rfind(","))
        if last >= 0:
            tail = len(digits) - last - 1
            if tail <= 2 and digits.count(digits[last]) == 1:
                whole, fraction = digits[:last], digits[last + 1 :]
            elif tail != 3 or not _GROUPED.match(digits):
                raise ValueError("has more than two decimals or misplaced separators")
        whole = whole.replace(",", "").replace(".", "").replace(" ", "") or "0"
        amount = int(whole) * 100 + int((fraction + "00")[:2])
        if amount > max_abs:
            raise ValueError("is too large")
        return sign * amount

    return parse


def decimal(*, places: int = 2) -> Parser:
    def parse(raw: str) -> Decimal:
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:
            raise ValueError("is not a number") from None
        if value.as_tuple().exponent < -places:  # type: ignore[operator]
            raise ValueError(f"has more than {places} decimals")
        return value

    return parse


def date(formats: Iterable[str] = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y")) -> Parser:
    """A date in the first of ``formats`` that matches (ISO first: ``2026-01-31``)."""
    chosen = tuple(formats)
    iso = chosen[:1] == ("%Y-%m-%d",)

    def parse(raw: str) -> dt.date:
        value = raw.strip()
        if iso and len(value) == 10:
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        for fmt in chosen:
            try:
                return dt.datetime.strptime(value, fmt).date()
            except ValueError:
                continue
        raise ValueError(f"is not a date ({' or '.join(f.replace('%', '') for f in chosen)})")

    return parse


def choice(values: Mapping[str, Any] | Iterable[str]) -> Parser:
    """One of ``values`` (case-insensitive); a mapping translates synonyms."""
    table = (
        {k.lower(): v for k, v in values.items()}
        if isinstance(values, Mapping)
        else {v.lower(): v for v in values}
    )
    allowed = ", ".join(sorted(table))

    def parse(raw: str) -> Any:
        try:
            return table[raw.strip().lower()]
        except KeyError:
            raise ValueError(f"is not one of {allowed}") from None

    return parse


_TRUE = {"1", "true", "yes", "y", "x", "t"}
_FALSE = {"0", "false", "no", "n", "", "f"}


def boolean() -> Parser:
    def parse(raw: str) -> bool:
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ValueError("is not yes/no")

    return parse
