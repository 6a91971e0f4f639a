"""casebook's dashboard rollups over the transactions ledger.

Defined on ``Base.metadata`` so the change feed tracks them (their rows carry
``organization_id`` and, per case, ``case_id``: cache scopes like any casebook table) and
migration ``0003_rollups`` creates them. Every ``writer()`` of a process that called
``AGGREGATES.install(db)`` keeps them exact; ``casebook aggregates verify`` proves it.
"""

from __future__ import annotations

from casebook.models import Base, Transaction
from lockstep import Aggregates, Count, Max, Min, Rollup, Sum, month

# Cleared activity (not flagged) by month: the organization dashboard.
MONTHLY = Rollup(
    "rollup_monthly",
    Transaction,
    keys=["organization_id", month("posted_on"), "category", "direction", "currency"],
    measures=[Count(), Sum("amount_cents", "amount_cents"), Max("amount_cents", "largest_cents")],
    where={"flagged": False},
    metadata=Base.metadata,
)

# Flagged activity by month: what is waiting for adjudication.
FLAGGED = Rollup(
    "rollup_monthly_flagged",
    Transaction,
    keys=["organization_id", month("posted_on"), "currency"],
    measures=[Count(), Sum("amount_cents", "amount_cents"), Max("amount_cents", "largest_cents")],
    where={"flagged": True},
    metadata=Base.metadata,
)

# Everything of one case, by category: the case dashboard.
CASES = Rollup(
    "rollup_case",
    Transaction,
    keys=["organization_id", "case_id", "category", "direction", "currency"],
    measures=[
        Count(),
        Sum("amount_cents", "amount_cents"),
        Max("amount_cents", "largest_cents"),
        Min("posted_on", "first_posted_on"),
        Max("posted_on", "last_posted_on"),
    ],
    metadata=Base.metadata,
)

AGGREGATES = Aggregates([MONTHLY, FLAGGED, CASES])
