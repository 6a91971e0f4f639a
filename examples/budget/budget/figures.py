"""Budget figures computed from the rollup, memoized on it.

The computations are plain functions over rollup rows (unit-testable without a database);
:class:`Figures` reads the rows and memoizes each figure on lockstep's exact cache, keyed by
its arguments and valid while the household's rollup rows are unchanged: a new, edited,
excluded or deleted entry of that household (and only of that household) recomputes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from budget.models import SPENDING
from budget.rollups import MONTHLY
from lockstep import Cache, Database, Dependency, Scope


@dataclass(frozen=True, slots=True)
class Cell:
    """One rollup row: a month x category x expense type x member group."""

    month: str
    category: str
    expense_type: str
    member_id: int
    count: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class Amount:
    name: str
    count: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class MonthSummary:
    household_id: int
    month: str
    income_cents: int
    tax_cents: int
    spending_cents: int
    net_cents: int  # income - tax - spending
    by_type: list[Amount]
    by_category: list[Amount]
    by_member: list[Amount]


@dataclass(frozen=True, slots=True)
class Provision:
    category: str
    trailing_cents: int  # irregular spending over the window
    monthly_cents: int  # what to set aside each month


@dataclass(frozen=True, slots=True)
class Provisions:
    household_id: int
    month: str
    window: list[str]  # the twelve months before ``month``
    items: list[Provision]
    total_monthly_cents: int


@dataclass(frozen=True, slots=True)
class TaxRate:
    member_id: int | None  # None: the whole household
    income_cents: int
    tax_cents: int
    rate: float | None  # tax / gross income


@dataclass(frozen=True, slots=True)
class TaxReport:
    household_id: int
    year: int
    household: TaxRate
    members: list[TaxRate]


# -- pure computations -----------------------------------------------------------------------


def _totals(cells: Iterable[Cell], name_of: Any) -> list[Amount]:
    sums: dict[str, list[int]] = {}
    for c in cells:
        acc = sums.setdefault(str(name_of(c)), [0, 0])
        acc[0] += c.count
        acc[1] += c.amount_cents
    return [Amount(name, n, cents) for name, (n, cents) in sorted(sums.items())]


def summarize(household_id: int, month: str, cells: Sequence[Cell]) -> MonthSummary:
    of_month = [c for c in cells if c.month == month]
    by_type = {a.name: a.amount_cents for a in _totals(of_month, lambda c: c.expense_type)}
    spending = sum(by_type.get(t, 0) for t in SPENDING)
    income, tax = by_type.get("income", 0), by_type.get("tax", 0)
    spent = [c for c in of_month if c.expense_type in SPENDING]
    return MonthSummary(
        household_id=household_id,
        month=month,
        income_cents=income,
        tax_cents=tax,
        spending_cents=spending,
        net_cents=income - tax - spending,
        by_type=_totals(of_month, lambda c: c.expense_type),
        by_category=_totals(spent, lambda c: c.category),
        by_member=_totals(spent, lambda c: c.member_id),
    )


def months_before(month: str, n: int) -> list[str]:
    year, number = int(month[:4]), int(month[5:7])
    out = []
    for _ in range(n):
        year, number = (year - 1, 12) if number == 1 else (year, number - 1)
        out.append(f"{year:04d}-{number:02d}")
    return sorted(out)


def provisions(household_id: int, month: str, cells: Sequence[Cell]) -> Provisions:
    """Set aside each month the average irregular spending of the twelve months before."""
    window = months_before(month, 12)
    first, last = window[0], window[-1]
    irregular = [c for c in cells if c.expense_type == "irregular" and first <= c.month <= last]
    items = [
        Provision(a.name, a.amount_cents, round(a.amount_cents / 12))
        for a in _totals(irregular, lambda c: c.category)
    ]
    return Provisions(household_id, month, window, items, sum(i.monthly_cents for i in items))


def _rate(member_id: int | None, cells: Iterable[Cell]) -> TaxRate:
    income = sum(c.amount_cents for c in cells if c.expense_type == "income")
    tax = sum(c.amount_cents for c in cells if c.expense_type == "tax")
    return TaxRate(member_id, income, tax, round(tax / income, 4) if income else None)


def tax_report(household_id: int, year: int, cells: Sequence[Cell]) -> TaxReport:
    of_year = [c for c in cells if c.month.startswith(f"{year:04d}-")]
    members = sorted({c.member_id for c in of_year})
    return TaxReport(
        household_id=household_id,
        year=year,
        household=_rate(None, of_year),
        members=[_rate(m, [c for c in of_year if c.member_id == m]) for m in members],
    )


# -- reading and memoizing -----------------------------------------------------------------


def household_rollup(household_id: int, *_: Any) -> list[Dependency]:
    return [Scope(MONTHLY.name, household_id=household_id)]


class Figures:
    """The budget figures of one app, memoized on its cache."""

    def __init__(self, database: Database, cache: Cache) -> None:
        self.database = database
        memo = cache.cached
        self.summary = memo(depends=household_rollup, name="budget.summary")(self._summary)
        self.provisions = memo(depends=household_rollup, name="budget.provisions")(self._provisions)
        self.tax = memo(depends=household_rollup, name="budget.tax")(self._tax)

    async def cells(self, household_id: int, first: str, last: str) -> list[Cell]:
        t = MONTHLY.table.c
        stmt = select(
            t.month, t.category, t.expense_type, t.member_id, t.row_count, t.amount_cents
        ).where(t.household_id == household_id, t.month >= first, t.month <= last)
        async with self.database.reader() as session:
            rows = (await session.execute(stmt)).all()
        return [Cell(r[0], r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows]

    async def _summary(self, household_id: int, month: str) -> MonthSummary:
        return summarize(household_id, month, await self.cells(household_id, month, month))

    async def _provisions(self, household_id: int, month: str) -> Provisions:
        window = months_before(month, 12)
        cells = await self.cells(household_id, window[0], window[-1])
        return provisions(household_id, month, cells)

    async def _tax(self, household_id: int, year: int) -> TaxReport:
        cells = await self.cells(household_id, f"{year:04d}-01", f"{year:04d}-12")
        return tax_report(household_id, year, cells)
