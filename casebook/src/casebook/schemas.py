"""The API's request shapes, and the bounded types every parameter is built from.

Inputs are strict (unknown fields rejected, bounded lengths); outputs are plain dicts built by
``*_out`` functions so sparse fieldsets (``?fields=``) can drop what was not asked for (their
declared shapes are in :mod:`casebook.responses`).

Every integer, amount, date and text the API accepts is one of the types below, each bounded
by the column it ends up in, so no input can reach the database as a value its column cannot
hold (an id past 2^31, a NUL byte, an amount past BIGINT): those are 422s, never 500s. A test
walks the OpenAPI document and fails on any integer without both bounds.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from fastapi import Path, Query
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from casebook.iban import iban_is_valid, looks_like_iban
from casebook.models import (
    Account,
    Case,
    CaseStatus,
    ConsentRecord,
    Direction,
    LegalBasis,
    Role,
    Subject,
    SubjectKind,
    Transaction,
    User,
)

INT32_MAX = 2**31 - 1  # Integer columns (every primary key but the jobs')
INT64_MAX = 2**63 - 1  # BigInteger columns (job ids)
MAX_AMOUNT_CENTS = 10**15 - 1  # 13 digits and 2 decimals: far inside BIGINT


def _json_integer(value: Any) -> Any:
    """An integer as JSON Schema has it: ``5`` or ``5.0``, never ``"5"`` or ``true``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


# Ids: at least 1, at most what their column holds. Integers and booleans in bodies are
# JSON's (``"5"`` is not an integer, ``1`` is not ``true``).
Id = Annotated[int, Field(ge=1, le=INT32_MAX), BeforeValidator(_json_integer)]
Level = Annotated[int, Field(ge=1, le=5), BeforeValidator(_json_integer)]
Flag = Annotated[bool, Strict()]
IdPath = Annotated[int, Path(ge=1, le=INT32_MAX)]
IdQuery = Annotated[int | None, Query(ge=1, le=INT32_MAX)]
JobIdPath = Annotated[int, Path(ge=1, le=INT64_MAX)]
JobIdQuery = Annotated[int | None, Query(ge=1, le=INT64_MAX)]

# Text never holds NUL (PostgreSQL refuses it; SQLite would keep it: both refuse it here).
# A required text must hold a visible character.
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^\s*[^\s\x00][^\x00]*$"


def _text(max_length: int, *, required: bool = False) -> StringConstraints:
    """At most ``max_length`` characters, no NUL (non-blank when ``required``). Stored as
    sent: stripping would accept what the declared length refuses."""
    return StringConstraints(
        min_length=1 if required else 0,
        max_length=max_length,
        pattern=NOT_BLANK if required else NO_NUL,
    )


Reference = Annotated[str, _text(40, required=True)]
Category = Annotated[str, _text(40, required=True)]
Name = Annotated[str, _text(200, required=True)]
Title = Annotated[str, _text(300, required=True)]
Line = Annotated[str, _text(200)]
Description = Annotated[str, _text(500)]
Notes = Annotated[str, _text(10_000)]
CategoryQuery = Annotated[str | None, Query(max_length=40, pattern=NO_NUL)]
SearchQuery = Annotated[str | None, Query(max_length=100, pattern=NO_NUL)]
NameQuery = Annotated[str | None, Query(max_length=100, pattern=NO_NUL)]
# A counterparty as the ledger spells it (any text but NUL; "" is the unnamed one).
CounterpartyQuery = Annotated[str | None, Query(max_length=200, pattern=NO_NUL)]
Purpose = Annotated[str, _text(100, required=True)]
# An account number or IBAN as written: letters, digits, spaces and dashes.
AccountIdentifier = Annotated[
    str, StringConstraints(min_length=4, max_length=42, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]*$")
]


Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Country = Annotated[str, StringConstraints(pattern=r"^([A-Z]{2})?$")]
# Amounts are decimal strings with at most two places, more than zero: "12.5", "0.01".
Money = Annotated[
    str,
    StringConstraints(
        pattern=r"^(?:[1-9][0-9]{0,12}(?:\.[0-9]{1,2})?|0?\.(?:[1-9][0-9]?|0[1-9]))$"
    ),
]
MoneyQuery = Annotated[str | None, Query(pattern=r"^[0-9]{1,13}(?:\.[0-9]{1,2})?$")]
# Months the rollups know: YYYY-MM in years 1000..2999 (a month's next month always exists).
MONTH = r"^[12][0-9]{3}-(0[1-9]|1[0-2])$"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: Any) -> Any:
    """Only ``YYYY-MM-DD`` is a date (pydantic would also take ``0`` as 1970-01-01)."""
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise ValueError("a date is written YYYY-MM-DD")
    if not isinstance(value, str | dt.date):
        raise ValueError("a date is written YYYY-MM-DD")
    return value


Date = Annotated[dt.date, BeforeValidator(_iso_date)]


def fields_param(allowed: frozenset[str]) -> Any:
    """``?fields=a,b``: a comma-separated subset of ``allowed`` (the pattern says which);
    use as ``fields: Annotated[str | None, fields_param(ALLOWED)] = None``."""
    names = "|".join(sorted(allowed))
    return Query(
        pattern=rf"^({names})(,({names}))*$",
        max_length=1000,
        description="Comma-separated fields to return (the id is always included)",
    )


CursorQuery = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_-]+$",
        max_length=200,
        description="The next_cursor of the previous page (opaque)",
    ),
]


class Body(BaseModel):
    """A request body: unknown fields refused; its integers, booleans and dates are the
    strict types above, so a value must have the type the schema declares."""

    model_config = ConfigDict(extra="forbid")


class Patch(Body):
    """A partial update: a field left out is unchanged. ``null`` is accepted only for the
    fields in ``nullable`` (columns that may be empty); anywhere else it is a 422, not a
    NOT NULL violation at commit."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required_columns(self) -> Patch:
        nulled = sorted(
            name for name in self.model_fields_set - self.nullable if getattr(self, name) is None
        )
        if nulled:
            raise ValueError(f"may not be null: {', '.join(nulled)}")
        return self


Email = Annotated[
    str, StringConstraints(min_length=3, max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$")
]
# A new user's first password: long enough that guessing is not the easy way in.
Password = Annotated[str, StringConstraints(min_length=12, max_length=1024, pattern=NO_NUL)]


class UserCreate(Body):
    email: Email
    full_name: Name
    role: Role
    password: Password


class UserUpdate(Patch):
    full_name: Name | SkipJsonSchema[None] = None
    role: Role | SkipJsonSchema[None] = None
    is_active: Flag | SkipJsonSchema[None] = None


LeaseMinutes = Annotated[int, Field(ge=1, le=24 * 60), BeforeValidator(_json_integer)]


class OrganizationUpdate(Patch):
    """``PATCH /organization``: a field left out is unchanged; ``adjudication_lease_minutes``
    null goes back to the deployment's default."""

    nullable = frozenset({"adjudication_lease_minutes"})

    name: Name | SkipJsonSchema[None] = None
    default_currency: Currency | SkipJsonSchema[None] = None
    adjudication_lease_minutes: LeaseMinutes | None = None
    report_footer: Line | SkipJsonSchema[None] = None


class CaseCreate(Body):
    reference: Reference
    title: Title
    description: Notes = ""
    priority: Level = 3
    assignee_id: Id | None = None
    opened_on: Date | None = None


class CaseUpdate(Patch):
    nullable = frozenset({"assignee_id"})

    title: Title | SkipJsonSchema[None] = None
    description: Notes | SkipJsonSchema[None] = None
    status: CaseStatus | SkipJsonSchema[None] = None
    priority: Level | SkipJsonSchema[None] = None
    assignee_id: Id | None = None


SubjectIdentifier = Annotated[str, _text(64)]


class SubjectCreate(Body):
    kind: SubjectKind
    name: Name
    identifier: SubjectIdentifier = ""
    country: Country = ""
    risk_level: Level = 1
    notes: Notes = ""


class SubjectUpdate(Patch):
    name: Name | SkipJsonSchema[None] = None
    identifier: SubjectIdentifier | SkipJsonSchema[None] = None
    country: Country | SkipJsonSchema[None] = None
    risk_level: Level | SkipJsonSchema[None] = None
    notes: Notes | SkipJsonSchema[None] = None


class TransactionCreate(Body):
    posted_on: Date
    amount: Money
    currency: Currency = "EUR"
    direction: Direction
    category: Category
    counterparty: Line = ""
    description: Description = ""
    subject_id: Id | None = None
    flagged: Flag = False


class TransactionUpdate(Patch):
    nullable = frozenset({"subject_id"})

    category: Category | SkipJsonSchema[None] = None
    counterparty: Line | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    flagged: Flag | SkipJsonSchema[None] = None
    subject_id: Id | None = None


def _checked_identifier(identifier: str | None) -> None:
    """ValueError (a 422) for an identifier that looks like an IBAN and fails its checksum."""
    if identifier is not None and looks_like_iban(identifier) and not iban_is_valid(identifier):
        raise PydanticCustomError(
            "invalid_iban", "identifier looks like an IBAN but its check digits are wrong"
        )


class AccountCreate(Body):
    """``identifier``: the IBAN or account number; only its masked form (``****1234``) is
    stored. An identifier that starts like an IBAN (two letters, two digits) must be one."""

    institution: Name
    identifier: AccountIdentifier
    currency: Currency = "EUR"

    @model_validator(mode="after")
    def _iban(self) -> AccountCreate:
        _checked_identifier(self.identifier)
        return self


class AccountUpdate(Patch):
    institution: Name | SkipJsonSchema[None] = None
    identifier: AccountIdentifier | SkipJsonSchema[None] = None
    currency: Currency | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _iban(self) -> AccountUpdate:
        _checked_identifier(self.identifier)
        return self


class ConsentCreate(Body):
    """A consent (or other lawful basis) for a subject: holds from ``granted_on`` until the
    day before ``expires_on`` (none: open-ended)."""

    purpose: Purpose
    legal_basis: LegalBasis = LegalBasis.CONSENT
    granted_on: Date
    expires_on: Date | None = None
    document_ref: Line = ""

    @model_validator(mode="after")
    def _expires_after_granted(self) -> ConsentCreate:
        if self.expires_on is not None and self.expires_on <= self.granted_on:
            raise PydanticCustomError("date_order", "expires_on must be after granted_on")
        return self


class ConsentRevoke(Body):
    """The first day the record no longer holds (default: today); not before it was
    granted, not in the future."""

    revoked_on: Date | None = None


def account_out(account: Account, case_id: int) -> dict[str, Any]:
    return {
        "id": account.id,
        "case_id": case_id,
        "subject_id": account.subject_id,
        "institution": account.institution,
        "number_masked": account.number_masked,
        "currency": account.currency,
        "version": account.version,
    }


def consent_out(record: ConsentRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "subject_id": record.subject_id,
        "purpose": record.purpose,
        "legal_basis": record.legal_basis.value,
        "granted_on": record.granted_on,
        "expires_on": record.expires_on,
        "revoked_on": record.revoked_on,
        "document_ref": record.document_ref,
        "recorded_by_id": record.recorded_by_id,
        "created_at": record.created_at,
        "version": record.version,
    }


NoteText = Annotated[str, _text(10_000, required=True)]


class NoteCreate(Body):
    body: NoteText


class NoteUpdate(Patch):
    body: NoteText | SkipJsonSchema[None] = None


def to_cents(amount: str | Decimal) -> int:
    """Cents of a :data:`Money` (or :data:`MoneyQuery`) string: exact, never a float."""
    return int(Decimal(amount) * 100)


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
        "identifier": subject.identifier,
        "country": subject.country,
        "risk_level": subject.risk_level,
        "notes": subject.notes,
        "version": subject.version,
    }


SUBJECT_FIELDS = frozenset(
    ["id", "case_id", "kind", "name", "identifier", "country", "risk_level", "notes", "version"]
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
