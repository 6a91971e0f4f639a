"""The table inside a statement file: where its header is (past the bank's preamble:
account, period, balance lines), where it ends (the trailer: totals, closing balance), and
what the preamble says about the whole file (the account's IBAN, the currency).

Plain functions over records (lists of cells), used by :mod:`.survey`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lockstep.imports import dates, numbers
from lockstep.imports import roles as r

HEAD = 60  # records searched for the header
TRAILER_MAX = 20  # records at the end that may be a trailer; more are rows gone wrong

_IBAN = re.compile(r"\b([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)\b")
_CODE = re.compile(r"(?<![A-Za-z])([A-Z]{3})(?![A-Za-z])")
CURRENCIES = frozenset((
    "EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK",
    "HUF", "BRL", "MXN", "INR", "CNY", "HKD", "SGD", "ZAR", "TRY", "RUB", "ILS", "KRW", "THB",
    "PHP", "IDR", "MYR", "AED", "SAR", "RON", "BGN", "ISK", "UAH", "NGN", "KES", "ARS", "CLP",
    "COP", "PEN",
))  # fmt: skip


def labels(cells: Sequence[str]) -> bool:
    filled = [c for c in cells if c.strip()]
    return len(filled) >= 2 and not any(dates.is_date(c) or numbers.is_amount(c) for c in filled)


def find_header(records: Sequence[Sequence[str]]) -> int:
    """The index of the header among a file's first records, -1 when it has none: the
    record naming the most roles (two at least), else the first record of labels followed
    by one holding a date."""
    best, found = 1, -1
    for index, cells in enumerate(records[:HEAD]):
        if not labels(cells):
            continue
        named = sum(bool(r.header_scores(c)) for c in cells)
        if named > best:
            best, found = named, index
    if found >= 0:
        return found
    for index, cells in enumerate(records[:HEAD]):
        following = records[index + 1] if index + 1 < len(records) else []
        if labels(cells) and any(dates.is_date(c) for c in following):
            return index
        if any(dates.is_date(c) for c in cells) and len([c for c in cells if c.strip()]) >= 2:
            return -1  # data before any header: there is none
    return -1


def find_account(lines: Sequence[str]) -> str:
    """The account a statement's preamble names (an IBAN), or ""."""
    for line in lines:
        match = _IBAN.search(line.upper())
        if match:
            return match.group(1).replace(" ", "")
    return ""


def currency_in(texts: Sequence[str]) -> str | None:
    for text in texts:
        for found in _CODE.findall(text):
            if found in CURRENCIES:
                return str(found)
        for symbol, code in (("€", "EUR"), ("£", "GBP"), ("$", "USD")):
            if symbol in text:
                return code
    return None


def is_trailer(cells: Sequence[str], date_at: int | None) -> bool:
    """A record that cannot be a transaction: no date where the booking date is."""
    if date_at is None:
        return False
    return date_at >= len(cells) or not dates.is_date(cells[date_at])


def text_of(cells: Sequence[str], delimiter: str) -> str:
    return (delimiter or ",").join(cells).strip()


def follow(tail: list[tuple[int, list[str]]], line: int, cells: list[str], at: int | None) -> None:
    """Keep ``tail`` the run of trailer-like records that ends the file so far."""
    if is_trailer(cells, at):
        if len(tail) <= TRAILER_MAX:
            tail.append((line, cells))
    else:
        tail.clear()
