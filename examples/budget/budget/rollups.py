"""The one rollup every budget figure is read from."""

from __future__ import annotations

from budget.models import Base, Entry
from lockstep import Aggregates, Count, Max, Rollup, Sum, month

MONTHLY = Rollup(
    "budget_monthly",
    Entry,
    keys=["household_id", month("posted_on"), "category", "expense_type", "member_id"],
    measures=[Count(), Sum("amount_cents", "amount_cents"), Max("amount_cents", "largest_cents")],
    where={"excluded": False},
    metadata=Base.metadata,
)
AGGREGATES = Aggregates([MONTHLY])
