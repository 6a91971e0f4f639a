"""The API's request and response shapes.

Inputs are strict (unknown fields rejected, bounded lengths); outputs are plain dicts built by
``*_out`` functions so sparse fieldsets (``?fields=``) can drop what was not asked for.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from casebook.models import Case, CaseStatus, Direction, Subject, SubjectKind, Transaction, User

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Country = Annotated[str, StringConstraints(pattern=r"^([A-Z]{2})?$")]
Money = Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=2)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CaseCreate(Strict):
    reference: str = Field(min_length=1, max_length=40)
    title: str = Field(min_length=1, max_length=300)
    description: str = Field("", max_length=10_000)
    priority: int = Field(3, ge=1, le=5)
    assignee_id: int | None = None
    opened_on: dt.date | None = None


class CaseUpdate(Strict):
    title: str | None = Field(None, min_length=1, max_length=300)
    description: str | None = Field(None, max_length=10_000)
    status: CaseStatus | None = None
    priority: int | None = Field(None, ge=1, le=5)
    assignee_id: int | None = None


class SubjectCreate(Strict):
    kind: SubjectKind
    name: str = Field(min_length=1, max_length=200)
    country: Country = ""
    risk_level: int = Field(1, ge=1, le=5)
    notes: str = Field("", max_length=10_000)


class SubjectUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    country: Country | None = None
    risk_level: int | None = Field(None, ge=1, le=5)
    notes: str | None = Field(None, max_length=10_000)


class TransactionCreate(Strict):
    posted_on: dt.date
    amount: Money
    currency: Currency = "EUR"
    direction: Direction
    category: str = Field(min_length=1, max_length=40)
    counterparty: str = Field("", max_length=200)
    description: str = Field("", max_length=500)
    subject_id: int | None = None
    flagged: bool = False


class TransactionUpdate(Strict):
    category: str | None = Field(None, min_length=1, max_length=40)
    counterparty: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=500)
    flagged: bool | None = None
    subject_id: int | None = None


def to_cents(amount: Decimal) -> int:
    return int(amount * 100)


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def user_summary(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.id, "full_name": user.full_name, "email": user.email}


def case_out(
    case: Case, *, with_assignee: bool = True, with_subjects: bool = False
) -> dict[str, Any]:
    """The case as JSON-ready data; relationships only when they were loaded."""
    out: dict[str, Any] = {
        "id": case.id,
        "reference": case.reference,
        "title": case.title,
        "description": case.description,
        "status": case.status.value,
        "priority": case.priority,
        "assignee_id": case.assignee_id,
        "opened_on": case.opened_on,
        "closed_on": case.closed_on,
        "version": case.version,
        "updated_at": case.updated_at,
    }
    if with_assignee:
        out["assignee"] = user_summary(case.assignee)
    if with_subjects:
        out["subjects"] = [subject_out(s) for s in case.subjects]
    return out


CASE_FIELDS = frozenset(
    [
        "id",
        "reference",
        "title",
        "description",
        "status",
        "priority",
        "assignee",
        "assignee_id",
        "opened_on",
        "closed_on",
        "version",
        "updated_at",
        "subjects",
    ]
)


def subject_out(subject: Subject) -> dict[str, Any]:
    return {
        "id": subject.id,
        "case_id": subject.case_id,
        "kind": subject.kind.value,
        "name": subject.name,
        "country": subject.country,
        "risk_level": subject.risk_level,
        "notes": subject.notes,
        "version": subject.version,
    }


SUBJECT_FIELDS = frozenset(
    ["id", "case_id", "kind", "name", "country", "risk_level", "notes", "version"]
)


def transaction_out(txn: Transaction) -> dict[str, Any]:
    return {
        "id": txn.id,
        "case_id": txn.case_id,
        "subject_id": txn.subject_id,
        "posted_on": txn.posted_on,
        "amount": format_cents(txn.amount_cents),
        "amount_cents": txn.amount_cents,
        "currency": txn.currency,
        "direction": txn.direction.value,
        "category": txn.category,
        "counterparty": txn.counterparty,
        "description": txn.description,
        "flagged": txn.flagged,
        "version": txn.version,
    }


TRANSACTION_FIELDS = frozenset(
    [
        "id",
        "case_id",
        "subject_id",
        "posted_on",
        "amount",
        "amount_cents",
        "currency",
        "direction",
        "category",
        "counterparty",
        "description",
        "flagged",
        "version",
    ]
)
