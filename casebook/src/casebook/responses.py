"""The API's response shapes, as the OpenAPI document declares them.

Handlers still return pre-serialized ``JSONBytesResponse`` bodies (FastAPI neither validates
nor re-encodes a returned Response), so these models cost nothing per request: they exist to
tell clients — and schemathesis, which checks every response against them — the truth.

Resources that take ``?fields=`` are declared in their sparse form (``*Fields``): any field
but ``id`` may be left out when the client asked for fewer. The full form is what a write
returns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from casebook.consent import ConsentStatus
from casebook.models import (
    AdjudicationStatus,
    CaseStatus,
    Direction,
    LegalBasis,
    Outcome,
    ReportStatus,
    Role,
    SubjectKind,
)


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


def sparse(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with every field but ``id`` optional: the shape of a ``?fields=`` answer."""
    fields: dict[str, Any] = {
        name: (info.annotation, ... if name == "id" else None)
        for name, info in model.model_fields.items()
    }
    return create_model(f"{model.__name__}Fields", __base__=Out, __doc__=model.__doc__, **fields)


def page_of(model: type[BaseModel]) -> type[BaseModel]:
    """One page of ``model``; pass ``next_cursor`` back as ``cursor`` for the next (null:
    this is the last)."""
    return create_model(
        f"{model.__name__}Page",
        __base__=Out,
        __doc__=page_of.__doc__,
        items=(list[model], ...),  # type: ignore[valid-type]
        next_cursor=(str | None, ...),
    )


class TokenOut(Out):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class MeOut(Out):
    id: int
    email: str
    full_name: str
    role: Role
    organization_id: int


class UserOut(Out):
    """A user of the organization, as admins manage them."""

    id: int
    email: str
    full_name: str
    role: Role
    is_active: bool
    created_at: dt.datetime


class OrganizationOut(Out):
    """The organization's settings (admins): its name, the currency of figures with no
    transaction behind them, how long a claim on an adjudication item lasts (null: the
    deployment's default, ``adjudication_lease_minutes_default``), the footer printed on
    every report page, and the version a PATCH's If-Match compares (through the ETag)."""

    id: int
    slug: str
    name: str
    default_currency: str
    adjudication_lease_minutes: int | None
    adjudication_lease_minutes_default: int
    effective_lease_minutes: int
    report_footer: str
    version: int


class UserList(Out):
    items: list[UserOut]


class Person(Out):
    """A member of the organization as every member sees them."""

    id: int
    full_name: str
    role: Role
    is_active: bool


class PersonList(Out):
    items: list[Person]


class UserSummary(Out):
    id: int
    full_name: str
    email: str


class SubjectOut(Out):
    """A person or company under investigation in a case."""

    id: int
    case_id: int
    kind: SubjectKind
    name: str
    identifier: str  # a national or tax id, a company registration number; "" if unknown
    country: str
    risk_level: int
    notes: str
    version: int


class CaseOut(Out):
    """A case; ``subjects`` only on the detail view, ``assignee`` unless left out."""

    id: int
    reference: str
    title: str
    description: str
    status: CaseStatus
    priority: int
    assignee_id: int | None
    opened_on: dt.date
    closed_on: dt.date | None
    version: int
    updated_at: dt.datetime
    assignee: UserSummary | None
    subjects: list[SubjectOut]


class CaseListItem(Out):
    """A case in a list (no subjects)."""

    id: int
    reference: str
    title: str
    description: str
    status: CaseStatus
    priority: int
    assignee_id: int | None
    opened_on: dt.date
    closed_on: dt.date | None
    version: int
    updated_at: dt.datetime
    assignee: UserSummary | None


class TransactionOut(Out):
    """A ledger entry; ``amount`` is the exact decimal string of ``amount_cents``."""

    id: int
    case_id: int
    subject_id: int | None
    posted_on: dt.date
    amount: str
    amount_cents: int
    currency: str
    direction: Direction
    category: str
    counterparty: str
    description: str
    flagged: bool
    version: int


CaseFields = sparse(CaseOut)
CaseListFields = sparse(CaseListItem)
SubjectFields = sparse(SubjectOut)
TransactionFields = sparse(TransactionOut)
CaseListPage = page_of(CaseListFields)
SubjectPage = page_of(SubjectFields)
TransactionPage = page_of(TransactionFields)


class FlaggedTransaction(Out):
    """The transaction an adjudication item is about, as the queue shows it."""

    id: int
    posted_on: dt.date
    amount: str
    amount_cents: int
    currency: str
    direction: Direction
    category: str
    counterparty: str
    description: str
    flagged: bool


class AdjudicationOut(Out):
    """An adjudication item. The lease is held by ``claimed_by_id`` while ``claimed_until``
    is in the future; ``outcome``, ``decision_reason``, ``decided_by_id`` and ``decided_at``
    are set once ``status`` is ``decided``. ``transaction`` is null for a rule hit without
    one, or a transaction deleted since."""

    id: int
    case_id: int
    transaction_id: int | None
    status: AdjudicationStatus
    priority: int
    reason: str
    flagged_by_id: int | None
    claimed_by_id: int | None
    claimed_until: dt.datetime | None
    outcome: Outcome | None
    decision_reason: str | None
    decided_by_id: int | None
    decided_at: dt.datetime | None
    created_at: dt.datetime
    version: int
    transaction: FlaggedTransaction | None


AdjudicationPage = page_of(AdjudicationOut)


class AuditEntryOut(Out):
    """One audited write: ``changes`` maps each changed column to ``[before, after]`` (an
    insert's before and a delete's after are null); a statement that wrote rows it did not
    name holds ``{"statement", "known"}``, a bulk insert ``{"rows": N}``. ``actor`` is
    ``user:{id}`` for a request, ``job:{task}`` or ``cli:{command}`` otherwise."""

    id: int
    chain: str
    seq: int
    at: dt.datetime
    actor: str | None
    table: str
    row_key: str | None
    op: str
    changes: dict[str, Any]
    hash: str


AuditPage = page_of(AuditEntryOut)


class Figures(Out):
    count: int
    amount_cents: int
    average_cents: int | None
    largest_cents: int | None


class ClearedRow(Figures):
    currency: str
    direction: Direction


class FlaggedRow(Figures):
    currency: str


class MonthRow(Out):
    month: str
    currency: str
    direction: Direction
    count: int
    amount_cents: int


class SummaryOut(Out):
    """``months`` (the trend) only in the all-time view (no ``month``)."""

    month: str | None
    cleared: list[ClearedRow]
    flagged: list[FlaggedRow]
    months: list[MonthRow] | None = None


class CategoryRow(ClearedRow):
    category: str


class CategoriesOut(Out):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    from_: str | None = Field(alias="from")
    to: str | None
    items: list[CategoryRow]


class CaseTotalRow(ClearedRow):
    first_posted_on: dt.date | None
    last_posted_on: dt.date | None


class CaseCategoryRow(CaseTotalRow):
    category: str


class CaseDashboardOut(Out):
    case_id: int
    totals: list[CaseTotalRow]
    categories: list[CaseCategoryRow]


class JobSummary(Out):
    state: str
    attempt: int
    max_attempts: int
    progress: dict[str, Any] | None
    error: str | None


class ImportOut(Out):
    """A statement import; ``job`` only on the single view, while the job is kept."""

    id: int
    case_id: int
    filename: str
    sha256: str
    status: str
    policy: str
    size_bytes: int
    encoding: str
    delimiter: str
    rows_read: int
    rows_imported: int
    rows_rejected: int
    message: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    job_id: int | None
    rejects_url: str | None
    format: str  # csv, ofx, camt053, mt940, qif
    account: str | None  # the statement's own account (IBAN or number), when it names one
    mapping: dict[str, Any] | None  # the columns' roles and the file's decisions
    findings: dict[str, Any] | None  # running-balance breaks, overlaps, trailer totals
    job: JobSummary | None = None


class ImportProfileSettings(Out):
    """The file-wide decisions a profile answers (``None``: decided from each file)."""

    decimal: str | None
    date_order: str | None
    sign: str | None
    currency: str | None
    account: str | None


class ImportProfileOut(Out):
    """How an organization reads one bank's statements (matched by the header fingerprint)."""

    id: int
    name: str
    fingerprint: str
    header: list[str]
    columns: dict[str, Any]
    settings: ImportProfileSettings
    created_at: dt.datetime
    updated_at: dt.datetime


class ImportProfileList(Out):
    items: list[ImportProfileOut]


class ImportList(Out):
    items: list[ImportOut]


class ReportOut(Out):
    """A case report; ``file_url`` once it is ``ready``, ``job`` on the single view."""

    id: int
    case_id: int
    kind: str
    status: ReportStatus
    job_id: int | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    file_url: str | None
    job: JobSummary | None = None


class ReportList(Out):
    items: list[ReportOut]


class PersonRef(Out):
    """Who wrote, uploaded or handled something: the user's id and name."""

    id: int
    full_name: str


class NoteOut(Out):
    """A note on a case; ``author`` is null when its author's account is gone."""

    id: int
    case_id: int
    author_id: int | None
    author: PersonRef | None
    body: str
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int


NotePage = page_of(NoteOut)


class EvidenceOut(Out):
    """A file attached to a case. ``sha256`` and ``size_bytes`` were computed by the server
    while the upload streamed in; ``filename`` is the client's, sanitized, for display only.
    ``verify_status`` (ok, mismatch, missing) is the last verification's. A deleted item
    keeps its metadata (``deleted_at``) and custody; its ``content_url`` is then null."""

    id: int
    case_id: int
    filename: str
    content_type: str
    description: str
    size_bytes: int
    sha256: str
    uploaded_by_id: int | None
    uploaded_by: PersonRef | None
    created_at: dt.datetime
    verified_at: dt.datetime | None
    verify_status: str | None
    deleted_at: dt.datetime | None
    deleted_by_id: int | None
    content_url: str | None
    version: int


EvidencePage = page_of(EvidenceOut)


class CustodyEventOut(Out):
    """One event of an evidence item's chain of custody: ``uploaded``, ``downloaded``,
    ``verified`` (``outcome`` ok, mismatch or missing) or ``deleted``; ``sha256`` is the
    hash seen then (null when there was no file); ``actor`` is ``user:{id}`` or
    ``cli:{command}``."""

    id: int
    evidence_id: int
    action: str
    outcome: str | None
    sha256: str | None
    actor: str
    user: PersonRef | None
    at: dt.datetime


CustodyPage = page_of(CustodyEventOut)


class JobOut(Out):
    """A job as admins see it in lists."""

    id: int
    task: str
    queue: str
    state: str
    priority: int
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    run_at: dt.datetime
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    worker_id: str | None
    unique_key: str | None
    schedule_key: str | None
    tenant: str | None
    reason: str | None
    error: str | None
    errors: list[dict[str, Any]]
    progress: dict[str, Any] | None
    has_result: bool
    result_expires_at: dt.datetime | None
    abort_requested: bool
    reclaims: int
    snoozes: int


class JobDetail(JobOut):
    """One job with its last traceback."""

    traceback: str | None


class JobPage(Out):
    """Pass the last ``id`` as ``before`` for the next page (``next_before``)."""

    items: list[JobOut]
    next_before: int | None


class QueueStatsOut(Out):
    queue: str
    scheduled: int
    queued: int
    running: int
    oldest_queued_seconds: float
    paused: bool


class QueueStatsList(Out):
    items: list[QueueStatsOut]


class OutboxMessageOut(Out):
    id: int
    channel: str
    recipient: str
    subject: str
    body: str
    job_id: int | None
    created_at: dt.datetime


class OutboxPage(Out):
    items: list[OutboxMessageOut]
    next_before: int | None


class ChannelCounts(Out):
    clients: int  # subscriptions to the channel on this process
    users: int  # distinct users among them


class RealtimeStats(Out):
    """This process's realtime connections and, per channel, who follows it."""

    connections: int
    channels: dict[str, ChannelCounts]


class AccountOut(Out):
    """An account a subject holds; only the identifier's last characters are kept."""

    id: int
    case_id: int
    subject_id: int
    institution: str
    number_masked: str
    currency: str
    version: int


AccountPage = page_of(AccountOut)


class BalanceMonth(Out):
    """One month of the account's activity in its currency; ``closing_cents`` is the
    balance at the month's end (credits less debits since the account's first entry)."""

    month: str
    count: int
    credits_cents: int
    debits_cents: int
    closing_cents: int


class BalanceOut(Out):
    """Monthly closing balances; ``opening_cents`` is the balance before the first month
    shown. Entries in another currency than the account's are left out and counted."""

    account_id: int
    currency: str
    opening_cents: int
    months: list[BalanceMonth]
    other_currency_count: int


class ConsentOut(Out):
    """A consent record: holds from ``granted_on`` until the day before ``expires_on`` or
    ``revoked_on`` (whichever comes first)."""

    id: int
    subject_id: int
    purpose: str
    legal_basis: LegalBasis
    granted_on: dt.date
    expires_on: dt.date | None
    revoked_on: dt.date | None
    document_ref: str
    recorded_by_id: int | None
    created_at: dt.datetime | None
    version: int


class SubjectConsentOut(Out):
    """A subject's consent records (newest grant first) and its status on ``as_of``."""

    subject_id: int
    as_of: dt.date
    status: ConsentStatus
    until: dt.date | None
    items: list[ConsentOut]


class ConsentSummaryRow(Out):
    subject_id: int
    name: str
    status: ConsentStatus
    until: dt.date | None


class CaseConsentOut(Out):
    """Every subject of the case with its consent status on ``as_of``."""

    case_id: int
    as_of: dt.date
    items: list[ConsentSummaryRow]


class DirectionTotal(Out):
    currency: str
    direction: Direction
    count: int
    amount_cents: int


class CounterpartyRow(Out):
    """A counterparty of the case's ledger ("" is the unnamed one) with its totals."""

    name: str
    count: int
    first_posted_on: dt.date
    last_posted_on: dt.date
    totals: list[DirectionTotal]


CounterpartyPage = page_of(CounterpartyRow)


class CounterpartyOut(Out):
    """One counterparty of a case: totals per direction and per month (its transactions are
    the case ledger's ``?counterparty=``)."""

    case_id: int
    name: str
    count: int
    totals: list[DirectionTotal]
    months: list[MonthRow]
