"""What a case report shows, read from one snapshot of the database.

:func:`report_data` reads every figure of the PDF — the case, its ledger totals, the
adjudication decisions and the items still open, each subject's consent, the case's audit
summary — *and* the change-feed position in the same read transaction (``REPEATABLE READ``
on PostgreSQL, one read transaction on SQLite). The report's "data as of" cursor therefore
dates every figure exactly: the changes ``feed.since(cursor)`` returns afterwards are
precisely the writes the report does not show.

The result is plain picklable values, rendered by :func:`casebook.reports.render_case_report`
in the worker's process pool.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from sqlalchemy import case, extract, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from casebook.audit import case_entries
from casebook.consent import consent_status
from casebook.models import (
    AdjudicationItem,
    AdjudicationStatus,
    Case,
    ConsentRecord,
    Direction,
    Organization,
    Report,
    Subject,
    Transaction,
    User,
    utcnow,
)
from lockstep import Cursor, Database
from lockstep.audit import audit_table

# The longest list of decisions / open items a report prints; beyond it the report says how
# many more there are (the web UI lists them all). Table rows are what rendering time goes
# on (fpdf2 wraps every cell's text): 100 of each keep the worst case to a few seconds.
LISTED_ITEMS = 100


class Feed(Protocol):
    """The change feed (``Lockstep.changes.feed``), as far as a report needs it."""

    async def position(self, session: Any) -> Cursor: ...


async def one_snapshot(session: AsyncSession, database: Database) -> None:
    """Make ``session``'s reads one snapshot: REPEATABLE READ on PostgreSQL (asked for before
    its first statement); a SQLite read session is one transaction already."""
    if not database.is_sqlite:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


async def report_data(session: AsyncSession, report: Report, feed: Feed) -> dict[str, Any]:
    """Everything the PDF shows, as plain picklable values; ``session`` must hold one
    snapshot (:func:`one_snapshot`) for the figures and the as-of cursor to agree."""
    as_of = await feed.position(session)
    case_row = await session.scalar(
        select(Case).where(Case.id == report.case_id).options(selectinload(Case.assignee))
    )
    if case_row is None:
        raise LookupError(f"case {report.case_id} of report {report.id} is gone")
    organization = await session.get(Organization, report.organization_id)
    generated = utcnow()
    ledger = await _ledger(session, case_row.id)
    consents = await _consents(session, case_row.id, generated.date())
    return {
        "title": f"Case {case_row.reference}: {case_row.title}",
        "organization": organization.name if organization else "",
        "footer": organization.report_footer if organization else "",
        "currency": organization.default_currency if organization else "",
        "generated_at": generated.strftime("%Y-%m-%d %H:%M UTC"),
        "as_of": {
            "cursor": as_of.encode(),
            "position": as_of.position,
            "at": generated.strftime("%Y-%m-%d %H:%M:%S UTC"),
        },
        "case": {
            "reference": case_row.reference,
            "title": case_row.title,
            "status": case_row.status.value,
            "opened_on": case_row.opened_on.isoformat(),
            "assignee": case_row.assignee.full_name if case_row.assignee else "",
            "subjects": len(consents),
            "transactions": sum(item["count"] for item in ledger["categories"]),
        },
        **ledger,
        **await _adjudication(session, case_row.id),
        "consents": consents,
        "audit": await _audit(session, report.organization_id, case_row.id),
    }


async def _ledger(session: AsyncSession, case_id: int) -> dict[str, Any]:
    """Debits and credits per category, per month and in total, each per currency."""
    debit = func.sum(
        case((Transaction.direction == Direction.DEBIT, Transaction.amount_cents), else_=0)
    )
    credit = func.sum(
        case((Transaction.direction == Direction.CREDIT, Transaction.amount_cents), else_=0)
    )
    of_case = Transaction.case_id == case_id
    cur = Transaction.currency
    by_category = await session.execute(
        select(Transaction.category, cur, func.count(), debit, credit)
        .where(of_case)
        .group_by(Transaction.category, cur)
        .order_by((debit + credit).desc(), Transaction.category, cur)
    )
    year, month = extract("year", Transaction.posted_on), extract("month", Transaction.posted_on)
    by_month = await session.execute(
        select(year, month, cur, debit, credit)
        .where(of_case)
        .group_by(year, month, cur)
        .order_by(year, month, cur)
    )
    categories = [
        {
            "category": c,
            "currency": k,
            "count": int(n),
            "debit_cents": int(d or 0),
            "credit_cents": int(r or 0),
        }
        for c, k, n, d, r in by_category
    ]
    totals: dict[str, dict[str, Any]] = {}
    for item in categories:
        total = totals.setdefault(
            item["currency"],
            {"currency": item["currency"], "count": 0, "debit_cents": 0, "credit_cents": 0},
        )
        for key in ("count", "debit_cents", "credit_cents"):
            total[key] += item[key]
    return {
        "categories": categories,
        "totals": [totals[k] for k in sorted(totals)],
        "months": [
            {
                "month": f"{int(y):04d}-{int(m):02d}",
                "currency": k,
                "debit_cents": int(d or 0),
                "credit_cents": int(r or 0),
            }
            for y, m, k, d, r in by_month
        ],
    }


async def _adjudication(session: AsyncSession, case_id: int) -> dict[str, Any]:
    """The case's decisions (newest first) and its items still pending review (most urgent
    first), each list up to :data:`LISTED_ITEMS` with the full count."""
    item, reviewer = AdjudicationItem, aliased(User)
    txn = Transaction
    columns = (
        item.id,
        item.transaction_id,
        txn.posted_on,
        txn.amount_cents,
        txn.currency,
        txn.direction,
        txn.counterparty,
    )
    of_case = item.case_id == case_id
    decided = await session.execute(
        select(*columns, item.outcome, item.decision_reason, reviewer.full_name, item.decided_at)
        .outerjoin(txn, txn.id == item.transaction_id)
        .outerjoin(reviewer, reviewer.id == item.decided_by_id)
        .where(of_case, item.status == AdjudicationStatus.DECIDED)
        .order_by(item.decided_at.desc(), item.id.desc())
        .limit(LISTED_ITEMS)
    )
    pending = await session.execute(
        select(*columns, item.reason, item.priority, item.created_at)
        .outerjoin(txn, txn.id == item.transaction_id)
        .where(of_case, item.status == AdjudicationStatus.PENDING)
        .order_by(item.priority, item.id)
        .limit(LISTED_ITEMS)
    )
    counts = dict(
        (
            await session.execute(
                select(item.status, func.count()).where(of_case).group_by(item.status)
            )
        ).all()
    )
    return {
        "decisions": [
            {
                **_transaction(r),
                "outcome": r.outcome.value if r.outcome else "",
                "reason": r.decision_reason or "",
                "reviewer": r.full_name or "",
                "decided_on": r.decided_at.date().isoformat() if r.decided_at else "",
            }
            for r in decided
        ],
        "decisions_total": int(counts.get(AdjudicationStatus.DECIDED, 0)),
        "open_items": [
            {
                **_transaction(r),
                "reason": r.reason,
                "priority": r.priority,
                "flagged_on": r.created_at.date().isoformat(),
            }
            for r in pending
        ],
        "open_total": int(counts.get(AdjudicationStatus.PENDING, 0)),
    }


def _transaction(row: Any) -> dict[str, Any]:
    signed = row.amount_cents
    if signed is not None and row.direction is Direction.DEBIT:
        signed = -signed
    return {
        "item_id": row.id,
        "transaction_id": row.transaction_id,
        "posted_on": row.posted_on.isoformat() if row.posted_on else "",
        "amount_cents": signed,
        "currency": row.currency or "",
        "counterparty": row.counterparty or "",
    }


async def _consents(session: AsyncSession, case_id: int, on: dt.date) -> list[dict[str, Any]]:
    """Each subject of the case with its consent status on ``on``, decided as the API and
    the UI decide it (:func:`casebook.consent.consent_status`)."""
    subjects = (
        await session.execute(
            select(Subject.id, Subject.name).where(Subject.case_id == case_id).order_by(Subject.id)
        )
    ).all()
    records: dict[int, list[ConsentRecord]] = {}
    for record in await session.scalars(
        select(ConsentRecord)
        .join(Subject, Subject.id == ConsentRecord.subject_id)
        .where(Subject.case_id == case_id)
    ):
        records.setdefault(record.subject_id, []).append(record)
    return [
        {"subject": name, "status": consent_status(records.get(sid, []), on).value}
        for sid, name in subjects
    ]


async def _audit(session: AsyncSession, organization_id: int, case_id: int) -> dict[str, Any]:
    """The case's audit entries counted per table and operation, and the head (last seq and
    hash) of the organization's chain, which every earlier entry's hash is folded into."""
    entries = case_entries(organization_id, case_id).order_by(None).subquery()
    counts = await session.execute(
        select(entries.c.table_name, entries.c.op, func.count())
        .group_by(entries.c.table_name, entries.c.op)
        .order_by(entries.c.table_name, entries.c.op)
    )
    head = (
        await session.execute(
            select(audit_table.c.seq, audit_table.c.hash)
            .where(audit_table.c.chain == str(organization_id))
            .order_by(audit_table.c.seq.desc())
            .limit(1)
        )
    ).first()
    return {
        "counts": [{"table": t, "op": o, "count": int(n)} for t, o, n in counts],
        "head_seq": int(head.seq) if head else 0,
        "head_hash": head.hash if head else "",
    }
