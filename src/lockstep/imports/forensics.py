"""Checks an analyst relies on when a statement is imported: does its running balance add
up, and which of its transactions an earlier import of the same account already holds.

**Running balance** (:class:`BalanceCheck`): each row's balance must equal the one before
plus the row's movement, in file order, whichever way the file runs (oldest or newest
first) and whichever sign its balance keeps (a card's balance owed grows with charges).
The first pair of rows that agree settles those two questions; every row that disagrees
after that is a *break* (a missing row, an altered amount, a doctored statement). A
balance column that never agrees with the movements is reported once, not per row.

**Overlap** (:class:`Overlap`): a transaction's identity is its account, date, signed
amount and normalized text, plus its *occurrence*: the second identical tram ride of a day
is occurrence 2. A re-exported statement overlapping an earlier import holds occurrences
the ledger already has (left out, and listed) and maybe new ones (imported); repeats
inside one file are distinct occurrences and all import.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FORWARD, BACKWARD = "oldest_first", "newest_first"


@dataclass(frozen=True, slots=True)
class BalanceBreak:
    line: int
    expected: int  # cents
    found: int


@dataclass(slots=True)
class BalanceCheck:
    """Feed it a file's rows in order (``feed``, batch after batch); read ``breaks``."""

    limit: int = 1_000
    breaks: list[BalanceBreak] = field(default_factory=list)
    count: int = 0
    checked: int = 0
    order: str | None = None
    sign: int = 0
    _last: tuple[int, int] | None = None  # (amount, balance) of the previous row

    def feed(
        self, lines: Sequence[int], amounts: Sequence[int], balances: Sequence[int | None]
    ) -> None:
        for line, amount, balance in zip(lines, amounts, balances, strict=True):
            if balance is None:
                continue
            last, self._last = self._last, (amount, balance)
            if last is None:
                continue
            before_amount, before = last
            step = balance - before
            self.checked += 1
            if self.order is None:
                for order, sign, moved in (
                    (FORWARD, 1, amount), (FORWARD, -1, -amount),
                    (BACKWARD, 1, -before_amount), (BACKWARD, -1, before_amount),
                ):  # fmt: skip
                    if step == moved:
                        self.order, self.sign = order, sign
                        break
                else:
                    self._break(line, before + amount, balance)
                continue
            moved = self.sign * (amount if self.order == FORWARD else -before_amount)
            if step != moved:
                self._break(line, before + moved, balance)

    def _break(self, line: int, expected: int, found: int) -> None:
        self.count += 1
        if len(self.breaks) < self.limit:
            self.breaks.append(BalanceBreak(line, expected, found))

    @property
    def never_agrees(self) -> bool:
        """True when the balance column never matched a movement (it is no running balance
        of these rows): its breaks mean nothing."""
        return self.checked > 0 and self.order is None


def normalized(text: str) -> str:
    return " ".join(text.casefold().split())


def identity(date: dt.date, amount: int, text: str) -> tuple[dt.date, int, str]:
    """A transaction's identity within its account, before its occurrence number."""
    return (date, amount, normalized(text))


@dataclass(slots=True)
class Overlap:
    """Which rows of a file the ledger already holds, batch by batch.

    ``known`` counts the identities stored for the account by earlier imports (add them
    with :meth:`know` for the dates a batch covers, once per date); :meth:`keep` numbers
    the file's occurrences and keeps the ones beyond what is known."""

    known: Counter[tuple[dt.date, int, str]] = field(default_factory=Counter)
    dates: set[dt.date] = field(default_factory=set)
    seen: Counter[tuple[dt.date, int, str]] = field(default_factory=Counter)

    def unknown_dates(self, dates: Iterable[dt.date]) -> set[dt.date]:
        """The dates of ``dates`` whose stored rows were not asked for yet."""
        return set(dates) - self.dates

    def know(self, dates: Iterable[dt.date], stored: Iterable[tuple[dt.date, int, str]]) -> None:
        """Record the stored rows (date, signed amount, text) of ``dates``."""
        wanted = set(dates)
        self.dates |= wanted
        self.known.update(identity(d, a, t) for d, a, t in stored if d in wanted)

    def keep(
        self, dates: Sequence[dt.date], amounts: Sequence[int], texts: Sequence[str]
    ) -> list[bool]:
        """Per row: True to import it, False when the ledger already holds it."""
        if not self.known:
            return [True] * len(dates)
        known, seen = self.known, self.seen
        out: list[bool] = []
        for date, amount, text in zip(dates, amounts, texts, strict=True):
            key = identity(date, amount, text)
            if key not in known:
                out.append(True)
                continue
            seen[key] += 1
            out.append(seen[key] > known[key])
        return out
