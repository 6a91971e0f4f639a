"""Adjudication: flagging a transaction, the reviewers' lease on an item, and the decision.

The rules, whichever way a write arrives (the API, an offline client's push):

* **Flag**: a transaction of the caller's organization becomes an item (``pending``) and is
  marked ``flagged``; one already pending review is a ConflictError.
* **Claim** (a lease of ``minutes``): granted when the item is pending and its lease is free,
  expired or already the caller's (a renewal). Two claims never both win: the check reads
  the item in the writing transaction and the write is ``UPDATE ... WHERE id = ? AND
  version = ?`` (SQLAlchemy's version counter, row count checked), so a claim that read
  a version another claim has since changed writes nothing and is refused (ConflictError).
  On PostgreSQL the write path reads the row ``FOR UPDATE`` first, so the loser waits for the
  winner's COMMIT and then sees its lease; on SQLite writers queue on ``BEGIN IMMEDIATE``.
* **Release**: the holder (or an admin) gives the lease back.
* **Decide**: only by the holder of an unexpired lease, once (a decided item is a
  ConflictError), with a non-empty reason. **Four-eyes**: nobody claims or decides an item
  they flagged or an item of a case assigned to them (PermissionDeniedError, checked again
  at the decision: the case may have been reassigned meanwhile). ``cleared`` takes the
  transaction's flag off; ``suspicious`` and ``escalate`` leave it flagged.

Every write goes through the session it is given (a ``Database.writer()``), so the change
feed, the caches, the realtime ``queue:{org}`` channel and the audit trail follow.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from casebook.auth import Principal
from casebook.models import (
    AdjudicationItem,
    AdjudicationStatus,
    Case,
    Organization,
    Outcome,
    Role,
    Transaction,
)
from casebook.schemas import NOT_BLANK, Level, format_cents
from lockstep import ConflictError, NotFoundError, PermissionDeniedError

DEFAULT_LEASE_MINUTES = 15

FlagReason = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=NOT_BLANK)]
DecisionReason = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NOT_BLANK)]


class FlagIn(BaseModel):
    """``POST /transactions/{id}/flag``: why it needs a review, and how urgently (1 most)."""

    model_config = ConfigDict(extra="forbid")
    reason: FlagReason
    priority: Level = 3


class DecisionIn(BaseModel):
    """``POST /adjudication/{id}/decide``: the outcome and why (required, not blank)."""

    model_config = ConfigDict(extra="forbid")
    outcome: Outcome
    reason: DecisionReason


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def lease_held(item: AdjudicationItem, at: dt.datetime) -> bool:
    """Whether someone holds the item's lease at ``at``."""
    return (
        item.assignee_id is not None and item.claimed_until is not None and item.claimed_until > at
    )


def four_eyes(item: AdjudicationItem, case_assignee_id: int | None, user_id: int) -> None:
    """PermissionDeniedError when ``user_id`` flagged the item or is assigned its case."""
    if item.flagged_by_id == user_id:
        raise PermissionDeniedError(
            "four-eyes rule: you flagged this item, another reviewer must decide it"
        )
    if case_assignee_id == user_id:
        raise PermissionDeniedError(
            "four-eyes rule: this item's case is assigned to you, another reviewer must decide it"
        )


async def load_item(
    session: AsyncSession, principal: Principal, item_id: int, *, with_transaction: bool = False
) -> AdjudicationItem:
    """The item if it belongs to the caller's organization; NotFoundError otherwise."""
    stmt = select(AdjudicationItem).where(
        AdjudicationItem.id == item_id,
        AdjudicationItem.organization_id == principal.organization_id,
    )
    if with_transaction:
        stmt = stmt.options(selectinload(AdjudicationItem.transaction))
    item = await session.scalar(stmt)
    if item is None:
        raise NotFoundError(f"adjudication item {item_id} not found")
    return item


async def _case_assignee(session: AsyncSession, item: AdjudicationItem) -> int | None:
    assignee: int | None = await session.scalar(
        select(Case.assignee_id).where(Case.id == item.case_id)
    )
    return assignee


async def _write(session: AsyncSession, item_id: int) -> None:
    """Flush the item's change: the conditional UPDATE (id and the version read). A claim
    that lost the race to another writer of the item is a ConflictError."""
    try:
        await session.flush()
    except StaleDataError:
        raise ConflictError(
            f"adjudication item {item_id} changed while you acted on it; read it again"
        ) from None


async def flag(
    session: AsyncSession, principal: Principal, txn_id: int, body: FlagIn
) -> AdjudicationItem:
    txn = await session.scalar(
        select(Transaction).where(
            Transaction.id == txn_id, Transaction.organization_id == principal.organization_id
        )
    )
    if txn is None:
        raise NotFoundError(f"transaction {txn_id} not found")
    pending = await session.scalar(
        select(AdjudicationItem.id).where(
            AdjudicationItem.transaction_id == txn_id,
            AdjudicationItem.status == AdjudicationStatus.PENDING,
        )
    )
    if pending is not None:
        raise ConflictError(
            f"transaction {txn_id} is already pending review (adjudication item {pending})",
            details={"item_id": pending},
        )
    item = AdjudicationItem(
        organization_id=principal.organization_id,
        case_id=txn.case_id,
        transaction_id=txn.id,
        reason=body.reason,
        priority=body.priority,
        flagged_by_id=principal.user_id,
        created_at=now(),
    )
    session.add(item)
    if not txn.flagged:
        txn.flagged = True
        txn.version += 1
    await session.flush()
    return item


async def lease_minutes(session: AsyncSession, organization_id: int, default: int) -> int:
    """How long a claim of the organization lasts: its setting (``/organization``), else
    ``default`` (the deployment's ``LOCKSTEP_ADJUDICATION_LEASE_MINUTES``)."""
    minutes = await session.scalar(
        select(Organization.adjudication_lease_minutes).where(Organization.id == organization_id)
    )
    return default if minutes is None else int(minutes)


async def claim(
    session: AsyncSession, principal: Principal, item_id: int, *, minutes: int
) -> AdjudicationItem:
    item = await load_item(session, principal, item_id)
    at = now()
    if item.status is not AdjudicationStatus.PENDING:
        raise ConflictError(f"adjudication item {item_id} is already decided")
    four_eyes(item, await _case_assignee(session, item), principal.user_id)
    if lease_held(item, at) and item.assignee_id != principal.user_id:
        raise ConflictError(
            f"adjudication item {item_id} is claimed by another reviewer until "
            f"{item.claimed_until:%Y-%m-%dT%H:%M:%SZ}",
            details={"claimed_by_id": item.assignee_id, "claimed_until": _iso(item.claimed_until)},
        )
    item.assignee_id = principal.user_id
    item.claimed_until = at + dt.timedelta(minutes=minutes)
    await _write(session, item_id)
    return item


async def release(session: AsyncSession, principal: Principal, item_id: int) -> AdjudicationItem:
    item = await load_item(session, principal, item_id)
    if item.status is not AdjudicationStatus.PENDING:
        raise ConflictError(f"adjudication item {item_id} is already decided")
    if item.assignee_id is None:
        raise ConflictError(f"adjudication item {item_id} is not claimed")
    if item.assignee_id != principal.user_id and principal.role is not Role.ADMIN:
        raise ConflictError(
            f"adjudication item {item_id} is claimed by another reviewer; only they or an "
            "admin may release it"
        )
    item.assignee_id = None
    item.claimed_until = None
    await _write(session, item_id)
    return item


async def decide(
    session: AsyncSession, principal: Principal, item_id: int, body: DecisionIn
) -> AdjudicationItem:
    item = await load_item(session, principal, item_id)
    at = now()
    if item.status is not AdjudicationStatus.PENDING:
        raise ConflictError(
            f"adjudication item {item_id} is already decided ({item.outcome})",
            details={"outcome": item.outcome.value if item.outcome else None},
        )
    four_eyes(item, await _case_assignee(session, item), principal.user_id)
    if item.assignee_id != principal.user_id or not lease_held(item, at):
        raise ConflictError(
            f"claim adjudication item {item_id} before deciding it (your lease is missing "
            "or has expired)"
        )
    item.status = AdjudicationStatus.DECIDED
    item.outcome = body.outcome
    item.decision_reason = body.reason
    item.decided_by_id = principal.user_id
    item.decided_at = at
    item.assignee_id = None
    item.claimed_until = None
    if body.outcome is Outcome.CLEARED and item.transaction_id is not None:
        txn = await session.get(Transaction, item.transaction_id)
        if txn is not None and txn.flagged:
            txn.flagged = False
            txn.version += 1
    await _write(session, item_id)
    return item


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def item_out(item: AdjudicationItem, txn: Transaction | None) -> dict[str, Any]:
    """The API's form of an item (``responses.AdjudicationOut``) with its transaction."""
    out: dict[str, Any] = {
        "id": item.id,
        "case_id": item.case_id,
        "transaction_id": item.transaction_id,
        "status": item.status.value,
        "priority": item.priority,
        "reason": item.reason,
        "flagged_by_id": item.flagged_by_id,
        "claimed_by_id": item.assignee_id,
        "claimed_until": item.claimed_until,
        "outcome": item.outcome.value if item.outcome else None,
        "decision_reason": item.decision_reason,
        "decided_by_id": item.decided_by_id,
        "decided_at": item.decided_at,
        "created_at": item.created_at,
        "version": item.version,
    }
    out["transaction"] = (
        None
        if txn is None
        else {
            "id": txn.id,
            "posted_on": txn.posted_on,
            "amount": format_cents(txn.amount_cents),
            "amount_cents": txn.amount_cents,
            "currency": txn.currency,
            "direction": txn.direction.value,
            "category": txn.category,
            "counterparty": txn.counterparty,
            "description": txn.description,
            "flagged": txn.flagged,
        }
    )
    return out


async def transaction_of(session: AsyncSession, item: AdjudicationItem) -> Transaction | None:
    """The item's transaction (null: deleted since, or a rule hit without one)."""
    if item.transaction_id is None:
        return None
    return await session.get(Transaction, item.transaction_id)
