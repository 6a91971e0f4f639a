"""A bank statement read through a :class:`~lockstep.imports.mapping.StatementMapping`:
the :class:`~lockstep.imports.schema.ImportSchema` of one file, whose rows come out with
one field per role and the money as one signed ``amount`` in cents (negative: money out).

The sign comes from, in this order: split debit/credit columns (a debit is money out
whatever sign it is written with), a direction column (``D``/``C``, ``S``/``H``,
``Af``/``Bij``, ``DBIT``/``CRDT``...), else the amount as written, or inverted for a card
statement whose charges are positive. A row with neither debit nor credit, or with both,
is refused; so is a direction the file's words do not name.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from lockstep.db.columns import Columns
from lockstep.imports import parsers
from lockstep.imports import roles as r
from lockstep.imports.dates import date_parser, read
from lockstep.imports.mapping import INVERTED, StatementMapping
from lockstep.imports.numbers import amount_parser
from lockstep.imports.schema import BatchCheck, ImportField, ImportSchema

OUT = ("d", "dr", "debit", "dbit", "s", "soll", "af", "out", "-", "debito", "cargo", "db",
       "lastschrift", "uitgaand", "withdrawal", "sale", "purchase")  # fmt: skip
IN = ("c", "cr", "credit", "crdt", "h", "haben", "bij", "in", "+", "credito", "abono",
      "gutschrift", "inkomend", "deposit", "payment", "refund")  # fmt: skip
DIRECTIONS = {word: -1 for word in OUT} | {word: 1 for word in IN}

TEXT_LIMITS = {r.COUNTERPARTY: 200, r.COUNTERPARTY_ACCOUNT: 64, r.DESCRIPTION: 500,
               r.REFERENCE: 200, r.CATEGORY: 40, r.KIND: 40}  # fmt: skip


def _currency(raw: str) -> str:
    value = raw.strip().upper()
    if len(value) != 3 or not value.isalpha():
        raise ValueError("is not a 3-letter currency code")
    return value


def _direction(raw: str) -> int:
    try:
        return DIRECTIONS[r.words(raw) or raw.strip()]
    except KeyError:
        raise ValueError("is not a direction (debit/credit)") from None


def _clipped(limit: int) -> parsers.Parser:
    """Text cut at ``limit`` characters: a long bank narrative is kept, not refused."""

    def parse(raw: str) -> str:
        value = raw.strip()
        if "  " in value or "\n" in value or "\t" in value or "\r" in value:
            value = " ".join(value.split())  # a narrative wrapped over lines or padded
        return value[:limit]

    return parse


def statement_schema(
    mapping: StatementMapping,
    *,
    check: BatchCheck | None = None,
    line_field: str | None = None,
) -> ImportSchema:
    """The schema of files read through ``mapping``: one field per role (absent roles
    take None, or "" for text), and the signed ``amount`` made by its check; ``check``
    then runs on the signed rows (an application's own rules)."""
    money = amount_parser(mapping.decimal)
    when = date_parser(mapping.date_order)
    positions = mapping.roles
    has_amount = r.AMOUNT in positions

    def field(
        name: str, parse: parsers.Parser, default: Any, required: bool = False
    ) -> ImportField:
        return ImportField(
            name, parse, required=required, default=default, position=positions.get(name)
        )

    fields = [
        field(r.BOOKING_DATE, when, None, required=True),
        field(r.VALUE_DATE, when, None),
        field(r.AMOUNT, money, None, required=has_amount),
        field(r.DEBIT, money, None),
        field(r.CREDIT, money, None),
        field(r.DIRECTION, _direction, None),
        field(r.CURRENCY, _currency, mapping.currency),
        field(r.BALANCE, money, None),
        *(field(role, _clipped(limit), "") for role, limit in TEXT_LIMITS.items()),
    ]
    inverted = mapping.sign == INVERTED and not (
        r.DEBIT in positions or r.CREDIT in positions or r.DIRECTION in positions
    )
    signer = _signer(has_amount, inverted)

    def checks(batch: Columns) -> Iterator[tuple[int, str]]:
        refused = dict(signer(batch))
        yield from refused.items()
        if check is not None:
            yield from ((i, why) for i, why in check(batch) if i not in refused)

    return ImportSchema(fields, check=checks, line_field=line_field)


def _signer(has_amount: bool, inverted: bool) -> BatchCheck:
    def sign(batch: Columns) -> Iterator[tuple[int, str]]:
        amounts, debits, credits = batch[r.AMOUNT], batch[r.DEBIT], batch[r.CREDIT]
        directions = batch[r.DIRECTION]
        if has_amount and not inverted:
            if directions.count(None) == len(directions):
                return  # the common file: one signed amount column
            if None not in directions and min(amounts) >= 0:
                # Unsigned amounts and a direction on every row: one pass at C speed.
                amounts[:] = map(operator.mul, directions, amounts)
                return
        for i, amount in enumerate(amounts):
            if not has_amount:
                debit, credit = debits[i] or None, credits[i] or None
                if debit is None and credit is None:
                    if debits[i] == 0 or credits[i] == 0:
                        amounts[i] = 0
                        continue
                    yield i, "amount: neither debit nor credit is filled"
                    continue
                if debit is not None and credit is not None:
                    yield i, "amount: both debit and credit are filled"
                    continue
                amounts[i] = -abs(debit) if debit is not None else abs(credit or 0)
            elif directions[i] is not None:
                if amount < 0 < directions[i]:
                    yield i, "amount: is negative although the direction says money in"
                    continue
                amounts[i] = directions[i] * abs(amount)
            elif inverted:
                amounts[i] = -amount

    return sign


def layout(mapping: StatementMapping) -> dict[str, Any]:
    """``ingest``'s keywords for a file read through ``mapping``: its header row, the
    labels of its columns, and its trailer: a record without a date-shaped booking date or
    without any money, which the file's end may hold (totals, closing balances)."""
    date_at = mapping.roles.get(r.BOOKING_DATE, 0)
    money_at = [mapping.roles[k] for k in (r.AMOUNT, r.DEBIT, r.CREDIT) if k in mapping.roles]

    def trailer(cells: Sequence[str]) -> bool:
        if date_at >= len(cells) or read(cells[date_at]) is None:
            return True
        return not any(i < len(cells) and cells[i].strip() for i in money_at)

    labels = [mapping.label(i) for i in range(mapping.width or len(mapping.header))]
    options: dict[str, Any] = {"header_row": mapping.header_row, "labels": labels}
    options["trailer"] = trailer
    return options


Trailer = Callable[[Sequence[str]], bool]
