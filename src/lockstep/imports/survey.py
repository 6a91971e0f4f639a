"""Reading a statement before importing it: where its table starts, what each column
holds, how it writes numbers, dates and signs, and what cannot be decided without a person.

:func:`survey` reads the file's first :data:`SAMPLE` data records (and further, only for a
decision still open, until a cell settles it; to the end with ``full``) and returns a
:class:`Survey`: the proposed :class:`StatementMapping`, the :class:`Question` s it will
not guess (ambiguous dates or decimal marks, the sign of a card statement, a column it
could not find), per-column warnings, the preamble, the trailer and the first rows as they
would be imported. A profile's mapping, when its fingerprint matches the file's header,
answers what the file itself does not say; ``answers`` override both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice, zip_longest
from typing import Any

from lockstep.imports import dates, numbers
from lockstep.imports import roles as r
from lockstep.imports.mapping import (
    AS_WRITTEN,
    INVERTED,
    Question,
    StatementMapping,
    fingerprint,
)
from lockstep.imports.source import CANONICAL, CSV, open_source
from lockstep.imports.spool import Spool
from lockstep.imports.statement import statement_schema
from lockstep.imports.table import (
    HEAD,
    TRAILER_MAX,
    currency_in,
    find_account,
    find_header,
    follow,
    text_of,
)

SAMPLE = 2_000  # data records decided from before reading on for open decisions only
SHOWN = 20  # rows shown in a preview


@dataclass(slots=True)
class Survey:
    format: str
    encoding: str
    delimiter: str
    mapping: StatementMapping
    questions: list[Question] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    preamble: list[str] = field(default_factory=list)
    trailer: list[tuple[int, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    profile_applied: bool = False

    @property
    def ready(self) -> bool:
        """Whether the file can be imported without asking anything."""
        return not self.questions

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "mapping": self.mapping.to_dict(),
            "questions": [q.as_dict() for q in self.questions],
            "warnings": self.warnings,
            "preamble": self.preamble,
            "trailer": [{"line": line, "text": text} for line, text in self.trailer],
            "rows": self.rows,
            "ready": self.ready,
            "profile_applied": self.profile_applied,
        }


def survey(
    spool: Spool,
    *,
    profile: StatementMapping | None = None,
    answers: Mapping[str, str] | None = None,
    full: bool = False,
) -> Survey:
    """Read ``spool`` far enough to propose how to import it (see the module doc). Raises
    ValidationFailedError when it is not a delimited file or known statement format."""
    source = open_source(spool)
    try:
        return _survey(spool, source, profile, answers or {}, full)
    finally:
        source.close()


def _survey(
    spool: Spool,
    source: Any,
    profile: StatementMapping | None,
    answers: Mapping[str, str],
    full: bool,
) -> Survey:
    records: Iterator[tuple[int, list[str]]] = source.records
    head = [(line, cells) for line, cells in islice(records, HEAD)]
    cells_only = [cells for _, cells in head]
    header_row = find_header(cells_only) if source.format == CSV else 0
    preamble = [text_of(c, source.delimiter) for c in cells_only[: max(header_row, 0)] if any(c)]
    header = tuple(cells_only[header_row]) if header_row >= 0 else ()
    data = [
        (line, cells) for line, cells in head[header_row + 1 :] if any(c.strip() for c in cells)
    ]
    data += [
        (line, cells)
        for line, cells in islice(records, max(0, SAMPLE - len(data)))
        if any(c.strip() for c in cells)
    ]
    width = max([len(header), *(len(c) for _, c in data[:200])])
    header = header + ("",) * (width - len(header))
    # Shapes from the records that hold a date somewhere: a summary line at the end of a
    # short file would otherwise weigh on them.
    dated = [cells for _, cells in data if any(dates.is_date(c) for c in cells)] or [
        cells for _, cells in data
    ]
    columns = [list(col) for col in zip_longest(*dated, fillvalue="")][:width]
    columns += [[] for _ in range(width - len(columns))]

    fingerprint_match = profile is not None and profile.fingerprint == fingerprint(header, width)
    if source.format != CSV:
        roles = {role: index for index, role in enumerate(CANONICAL)}  # the format says
    elif fingerprint_match and profile is not None:
        roles = dict(profile.roles)
    else:
        roles = r.assign(header if header_row >= 0 else [""] * width, columns)
    mapping = StatementMapping(
        header=header,
        header_row=header_row,
        roles=roles,
        account=source.account or find_account(preamble),
        currency=source.currency,
        width=width,
    )
    if source.canonical:
        mapping = replace(mapping, decimal=numbers.DOT)
    if fingerprint_match and profile is not None:
        mapping = mapping.answered(profile.settings())
    mapping = mapping.answered({k: v for k, v in answers.items() if k in r.ROLES})
    result = Survey(source.format, spool.encoding, source.delimiter, mapping, preamble=preamble)
    result.profile_applied = fingerprint_match

    # The trailer: records at the end without a booking date (totals, closing balances).
    date_at = mapping.roles.get(r.BOOKING_DATE)
    tail: list[tuple[int, list[str]]] = []
    for line, cells in data:
        follow(tail, line, cells, date_at)
    rest = records
    if full:
        for line, cells in rest:
            if any(c.strip() for c in cells):
                follow(tail, line, cells, date_at)
                if len(data) < SAMPLE:
                    data.append((line, cells))
        rest = iter(())
    body = data[: len(data) - len(tail)] if len(tail) <= TRAILER_MAX else data
    if len(tail) <= TRAILER_MAX:
        result.trailer = [(line, text_of(cells, source.delimiter)) for line, cells in tail]

    if source.canonical:
        mapping = mapping.answered({k: v for k, v in answers.items() if k not in r.ROLES})
    else:
        mapping = _decide(mapping, body, rest, answers, result, fingerprint_match, profile)
    result.mapping = mapping
    _ask_for_roles(result)
    _preview(result, body)
    return result


def _cells(body: Sequence[tuple[int, list[str]]], at: Sequence[int]) -> list[str]:
    return [cells[i] for _, cells in body for i in at if i < len(cells) and cells[i].strip()]


def _decide(
    mapping: StatementMapping,
    body: list[tuple[int, list[str]]],
    rest: Iterator[tuple[int, list[str]]],
    answers: Mapping[str, str],
    result: Survey,
    from_profile: bool,
    profile: StatementMapping | None,
) -> StatementMapping:
    money_at = [mapping.roles[k] for k in r.MONEY_ROLES if k in mapping.roles]
    date_at = [mapping.roles[k] for k in r.DATE_ROLES if k in mapping.roles]
    decimal = numbers.decide_decimal(_cells(body, money_at))
    order = dates.decide_order(_cells(body, date_at))
    if decimal.ambiguous or order.ambiguous:
        # Read on, for the open decisions only, until a cell settles each of them.
        for _, cells in rest:
            if decimal.ambiguous:
                found = numbers.decide_decimal(_cells([(0, cells)], money_at))
                if found.mark is not None:
                    decimal = found
            if order.ambiguous:
                found_order = dates.decide_order(_cells([(0, cells)], date_at))
                if found_order.order is not None:
                    order = found_order
            if not (decimal.ambiguous or order.ambiguous):
                break
    settings: dict[str, str] = {}
    if decimal.mark is not None:
        settings["decimal"] = decimal.mark
    if order.order is not None:
        settings["date_order"] = order.order
    if decimal.conflicting:
        result.warnings.append(
            f"amounts: {decimal.counts[0]} cells use '.' as the decimal mark and "
            f"{decimal.counts[1]} use ','; '{decimal.mark}' is taken, the others are refused"
        )
    if order.conflicting:
        result.warnings.append(
            "dates: no day/month order fits every cell; "
            f"{'day' if order.order == dates.DMY else 'month'}-first fits the most, the others "
            "are refused"
        )
    chosen = replace(mapping, decimal=None, date_order=None).answered(settings)
    if from_profile and profile is not None:
        for key in ("decimal", "date_order"):
            mine, theirs = getattr(chosen, key), getattr(profile, key)
            if mine is None and theirs is not None:
                chosen = replace(chosen, **{key: theirs})
    chosen = chosen.answered({k: v for k, v in answers.items() if k not in r.ROLES})
    if decimal.ambiguous and chosen.decimal is None:
        result.questions.append(
            Question(
                "decimal",
                "Every amount could be read two ways (like 1.500 or 12,345): is the decimal "
                "mark a dot or a comma?",
                (numbers.DOT, numbers.COMMA),
            )
        )
    if order.ambiguous and chosen.date_order is None:
        result.questions.append(
            Question(
                "date_order",
                "Every date has a day of 12 or less, so 03/04 could be 3 April or March 4: "
                "is the day or the month first?",
                (dates.DMY, dates.MDY),
            )
        )
    return _decide_sign(chosen, body, answers, result, from_profile)


def _decide_sign(
    mapping: StatementMapping,
    body: list[tuple[int, list[str]]],
    answers: Mapping[str, str],
    result: Survey,
    from_profile: bool,
) -> StatementMapping:
    roles = mapping.roles
    money = [roles.get(r.AMOUNT), roles.get(r.BALANCE)]
    if (
        roles.get(r.AMOUNT) is None
        or any(k in roles for k in (r.DEBIT, r.CREDIT, r.DIRECTION))
        or "sign" in answers
        or from_profile
    ):
        return mapping
    parse = numbers.amount_parser(mapping.decimal)
    amounts: list[int] = []
    balances: list[int | None] = []
    for _, cells in body:
        try:
            amounts.append(parse(cells[money[0] or 0]))
            at = money[1]
            balances.append(parse(cells[at]) if at is not None and cells[at].strip() else None)
        except (ValueError, IndexError):
            continue
    if money[1] is not None:
        # A running balance that moves against the amounts proves them inverted. One that
        # moves with them proves nothing: a card's balance owed grows with its charges too.
        written = inverted = 0
        for i in range(1, len(amounts)):
            before, after = balances[i - 1], balances[i]
            if before is None or after is None:
                continue
            step = after - before
            written += step in (amounts[i], -amounts[i - 1])
            inverted += step in (-amounts[i], amounts[i - 1])
        if inverted > written:
            return replace(mapping, sign=INVERTED)
    moving = [a for a in amounts if a]
    if moving and sum(a > 0 for a in moving) * 2 > len(moving):
        result.questions.append(
            Question(
                "sign",
                "Most amounts are positive, as on a card statement whose charges are positive "
                "(an account's statement has more money out than in): are positive amounts "
                "money out (inverted) or money in (as written)?",
                (INVERTED, AS_WRITTEN),
            )
        )
    return mapping


def _ask_for_roles(result: Survey) -> None:
    mapping = result.mapping
    choices = tuple(mapping.label(i) for i in range(mapping.width))
    roles = mapping.roles
    if r.BOOKING_DATE not in roles:
        result.questions.append(
            Question(r.BOOKING_DATE, "Which column holds the booking date?", choices)
        )
    if not any(k in roles for k in (r.AMOUNT, r.DEBIT, r.CREDIT)):
        result.questions.append(
            Question(r.AMOUNT, "Which column holds the amount (or debit and credit)?", choices)
        )
    if mapping.currency is None:
        # The currency of rows whose own cell names none: from the money columns' header
        # (``Betrag (EUR)``), else the preamble.
        money = [mapping.label(roles[k]) for k in r.MONEY_ROLES if k in roles]
        found = currency_in([*money, *result.preamble])
        if found is not None:
            result.mapping = replace(mapping, currency=found)
        elif r.CURRENCY not in roles:
            result.warnings.append("currency: the file names none; the default is used")


def _preview(result: Survey, body: Sequence[tuple[int, list[str]]]) -> None:
    mapping = result.mapping
    labels = [mapping.label(i) for i in range(mapping.width)]
    if r.BOOKING_DATE not in mapping.roles:
        return
    binding = statement_schema(mapping).bind(labels)
    for line, cells in body[:SHOWN]:
        converted = binding.convert(line, cells)
        if isinstance(converted, dict):
            row = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                   for k, v in converted.items() if v not in (None, "")}  # fmt: skip
            result.rows.append({"line": line, "values": row})
        else:
            result.rows.append(
                {
                    "line": line,
                    "errors": [
                        {"column": x.column, "reason": x.reason, "value": x.value}
                        for x in converted
                    ],
                }
            )
