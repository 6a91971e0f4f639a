"""casebook offline: the shapes its clients sync (``GET /v1/shape``) and the edits they push
(``POST /sync/push``: case fields, subject notes, adjudication decisions).

Every shape is scoped to the caller's organization, whatever ``where`` a client sends:
another tenant's rows are never returned, and a row moved to another organization reaches
the old one's clients as a delete.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.requests import Request

from casebook import adjudication
from casebook.adjudication import DecisionIn
from casebook.assignees import check_assignee
from casebook.auth import Principal
from casebook.models import (
    AdjudicationItem,
    Case,
    CaseStatus,
    Role,
    Subject,
    Transaction,
)
from casebook.schemas import case_out, subject_out
from casebook.standing import Standing
from lockstep import AuthenticationError, Database, NotFoundError, PermissionDeniedError
from lockstep.offline import MutationContext, Mutations, ScopeShape, Shape, SyncScope, in_list


async def principal_of(standing: Standing, request: Request) -> Principal:
    """The caller from ``Authorization: Bearer <access token>`` whose user still stands;
    401 otherwise."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("missing bearer token")
    return await standing.authenticate(token.strip())


def shapes(standing: Standing) -> list[Shape]:
    """cases, subjects, adjudication_items and transactions of the caller's organization."""

    async def organization(request: Request) -> Mapping[str, Any]:
        return {"organization_id": (await principal_of(standing, request)).organization_id}

    scope: Callable[[Request], Awaitable[Mapping[str, Any]]] = organization
    return [
        Shape(
            Case.__table__,  # type: ignore[arg-type]
            scope=scope,
            columns=[
                "id",
                "reference",
                "title",
                "description",
                "status",
                "priority",
                "assignee_id",
                "opened_on",
                "closed_on",
                "version",
                "updated_at",
            ],
        ),
        Shape(
            Subject.__table__,  # type: ignore[arg-type]
            scope=scope,
            columns=[
                "id",
                "case_id",
                "kind",
                "name",
                "country",
                "risk_level",
                "notes",
                "version",
                "updated_at",
            ],
        ),
        Shape(
            AdjudicationItem.__table__,  # type: ignore[arg-type]
            scope=scope,
            columns=[
                "id",
                "case_id",
                "transaction_id",
                "status",
                "reason",
                "assignee_id",
                "decided_by_id",
                "decided_at",
                "created_at",
                "flagged_by_id",
                "priority",
                "claimed_until",
                "outcome",
                "decision_reason",
                "version",
            ],
        ),
        Shape(
            Transaction.__table__,  # type: ignore[arg-type]
            scope=scope,
            columns=[
                "id",
                "case_id",
                "subject_id",
                "account_id",
                "posted_on",
                "amount_cents",
                "currency",
                "direction",
                "category",
                "counterparty",
                "description",
                "flagged",
                "version",
            ],
        ),
    ]


# -- sync scopes (GET /v1/sync/scopes/{name}) ---------------------------------------------

OPEN = (CaseStatus.OPEN.value, CaseStatus.UNDER_REVIEW.value)
MAX_SCOPED_CASES = 150  # a where's IN list stays within the shape filter's size limit


@dataclass(frozen=True, slots=True)
class Assigned:
    """A caller's open cases (most urgent first), what the "my-cases" scope binds."""

    user_id: int
    case_ids: tuple[int, ...]


def scopes(standing: Standing, db: Database) -> list[SyncScope]:
    """``my-cases``, what an investigator on site needs first: the caller's assigned open
    cases, then their subjects, then their transactions; then each case's page (prefetch).
    Every shape stays scoped to the caller's organization by ``/v1/shape`` itself."""

    async def assigned(request: Request) -> Assigned:
        principal = await principal_of(standing, request)
        async with db.reader() as session:
            ids = await session.scalars(
                select(Case.id)
                .where(
                    Case.organization_id == principal.organization_id,
                    Case.assignee_id == principal.user_id,
                    Case.status.in_([CaseStatus(s) for s in OPEN]),
                )
                .order_by(Case.priority, Case.id)
                .limit(MAX_SCOPED_CASES)
            )
            return Assigned(principal.user_id, tuple(ids))

    def of_my_cases(bound: Assigned) -> str:
        return in_list("case_id", bound.case_ids)

    return [
        SyncScope(
            "my-cases",
            bind=assigned,
            shapes=[
                ScopeShape(
                    "cases",
                    where="assignee_id = $1 AND status IN ($2, $3)",
                    params=lambda bound: [bound.user_id, *OPEN],
                    priority=0,
                ),
                ScopeShape("subjects", where=of_my_cases, params=_case_ids, priority=1),
                ScopeShape("transactions", where=of_my_cases, params=_case_ids, priority=2),
            ],
            prefetch=lambda bound: [f"/api/v1/cases/{i}" for i in bound.case_ids],
        )
    ]


def _case_ids(bound: Assigned) -> tuple[int, ...]:
    return bound.case_ids


# -- mutations (POST /sync/push) -------------------------------------------------------------


class CaseEdit(BaseModel):
    """``case.update``: the fields to change; ``base_version`` is the case's version."""

    model_config = ConfigDict(extra="forbid")
    case_id: int
    title: str | None = Field(None, min_length=1, max_length=300)
    description: str | None = Field(None, max_length=10_000)
    status: CaseStatus | None = None
    priority: int | None = Field(None, ge=1, le=5)
    assignee_id: int | None = Field(None, ge=1, le=2**31 - 1)  # null: unassigned


class SubjectNotes(BaseModel):
    """``subject.notes``: a subject's notes; ``base_version`` is the subject's version."""

    model_config = ConfigDict(extra="forbid")
    subject_id: int
    notes: str = Field(max_length=10_000)


class Decision(DecisionIn):
    """``adjudication.decide``: ``base_version`` is the item's version the reviewer saw.
    The API's rules hold (a lease of the pusher's, unexpired; four-eyes; once)."""

    item_id: int


def mutations(standing: Standing) -> Mutations:
    """The edits casebook's clients push: case fields, subject notes, adjudications."""
    registry = Mutations(
        authenticate=lambda request: principal_of(standing, request),
        owner=lambda principal: principal.user_id,
    )

    @registry.register("case.update", CaseEdit)
    async def update_case(ctx: MutationContext, args: CaseEdit) -> dict[str, Any]:
        principal: Principal = ctx.principal
        if not principal.has_role(Role.ANALYST):
            raise PermissionDeniedError("analyst or admin role required")
        case = await _one(ctx, Case, args.case_id, principal, "case")
        ctx.expect_version(case.version, current=lambda: case_out(case, with_assignee=False))
        changes = args.model_dump(exclude_unset=True, exclude={"case_id"})
        if "assignee_id" in changes:
            await check_assignee(ctx.session, principal, changes["assignee_id"])
        for name, value in changes.items():
            setattr(case, name, value)
        if changes.get("status") is CaseStatus.CLOSED and case.closed_on is None:
            case.closed_on = dt.date.today()
        case.version += 1
        return {"id": case.id, "version": case.version}

    @registry.register("subject.notes", SubjectNotes)
    async def subject_notes(ctx: MutationContext, args: SubjectNotes) -> dict[str, Any]:
        principal: Principal = ctx.principal
        if not principal.has_role(Role.ANALYST):
            raise PermissionDeniedError("analyst or admin role required")
        subject = await _one(ctx, Subject, args.subject_id, principal, "subject")
        ctx.expect_version(subject.version, current=lambda: subject_out(subject))
        subject.notes = args.notes
        subject.version += 1
        return {"id": subject.id, "version": subject.version}

    @registry.register("adjudication.decide", Decision)
    async def decide(ctx: MutationContext, args: Decision) -> dict[str, Any]:
        principal: Principal = ctx.principal
        if not principal.has_role(Role.REVIEWER):
            raise PermissionDeniedError("reviewer or admin role required")
        item = await _one(ctx, AdjudicationItem, args.item_id, principal, "adjudication item")
        ctx.expect_version(item.version, current=lambda: _item_out(item))
        body = DecisionIn(outcome=args.outcome, reason=args.reason)
        item = await adjudication.decide(ctx.session, principal, args.item_id, body)
        return {"id": item.id, "status": item.status.value, "version": item.version}

    return registry


async def _one(
    ctx: MutationContext, model: Any, row_id: int, principal: Principal, what: str
) -> Any:
    found = await ctx.session.scalar(
        select(model).where(model.id == row_id, model.organization_id == principal.organization_id)
    )
    if found is None:
        raise NotFoundError(f"{what} {row_id} not found")
    return found


def _item_out(item: AdjudicationItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "case_id": item.case_id,
        "status": item.status.value,
        "outcome": item.outcome.value if item.outcome else None,
        "decision_reason": item.decision_reason,
        "decided_by_id": item.decided_by_id,
        "version": item.version,
    }
