"""casebook's domain: tenants, people, cases and the money that moves through them.

Every row carries ``organization_id`` (the tenant) so every query can be scoped to the caller's
organization. Amounts are integer cents in the transaction's currency, never floats.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use an aware UTC datetime")
        return None if value is None else value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as plain strings with a CHECK-free VARCHAR so adding a value needs no migration
    # gymnastics on SQLite; validation happens in the API schemas.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda e: [m.value for m in e],
    )


class Role(enum.StrEnum):
    ANALYST = "analyst"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class CaseStatus(enum.StrEnum):
    OPEN = "open"
    UNDER_REVIEW = "under_review"
    CLOSED = "closed"


class Direction(enum.StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class SubjectKind(enum.StrEnum):
    PERSON = "person"
    COMPANY = "company"


class AdjudicationStatus(enum.StrEnum):
    PENDING = "pending"  # in the queue (claimed or not)
    DECIDED = "decided"  # its ``outcome`` is final


class Outcome(enum.StrEnum):
    """What a reviewer decided about a flagged transaction (0010_adjudication)."""

    CLEARED = "cleared"
    SUSPICIOUS = "suspicious"
    ESCALATE = "escalate"


class LegalBasis(enum.StrEnum):
    """The lawful bases for processing personal data (GDPR art. 6(1)) (0012_consent)."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


class ReportStatus(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # 0013_org_settings: the organization's settings (``/api/v1/organization``, admins):
    # the currency of a figure with no transaction behind it, the length of a reviewer's
    # claim on an adjudication item (null: the deployment's
    # LOCKSTEP_ADJUDICATION_LEASE_MINUTES), the text printed at the foot of every report
    # page, and the version counter its If-Match compares.
    # (Server defaults only: a Core insert written before 0013 names none of these.)
    default_currency: Mapped[str] = mapped_column(String(3), server_default="EUR")
    adjudication_lease_minutes: Mapped[int | None] = mapped_column(Integer)
    report_footer: Mapped[str] = mapped_column(String(200), server_default=text("''"))
    version: Mapped[int] = mapped_column(Integer, server_default="1")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("organization_id", "reference", name="uq_cases_org_reference"),
        Index("ix_cases_org_status_id", "organization_id", "status", "id"),
        Index("ix_cases_org_id", "organization_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    reference: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[CaseStatus] = mapped_column(_enum(CaseStatus), default=CaseStatus.OPEN)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    opened_on: Mapped[dt.date] = mapped_column(Date)
    closed_on: Mapped[dt.date | None] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    assignee: Mapped[User | None] = relationship(lazy="raise")
    subjects: Mapped[list[Subject]] = relationship(
        back_populates="case", lazy="raise", order_by="Subject.id", passive_deletes=True
    )


class Subject(Base):
    __tablename__ = "subjects"
    __table_args__ = (Index("ix_subjects_org_case_id", "organization_id", "case_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[SubjectKind] = mapped_column(_enum(SubjectKind))
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2), default="")
    risk_level: Mapped[int] = mapped_column(Integer, default=1)
    notes: Mapped[str] = mapped_column(Text, default="")
    # 0014: a national or tax id, a company registration number (server default only, so
    # inserts at older revisions still work).
    identifier: Mapped[str] = mapped_column(String(64), server_default=text("''"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    case: Mapped[Case] = relationship(back_populates="subjects", lazy="raise")
    accounts: Mapped[list[Account]] = relationship(
        lazy="raise", order_by="Account.id", passive_deletes=True
    )


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    subject_id: Mapped[int] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), index=True
    )
    institution: Mapped[str] = mapped_column(String(200))
    number_masked: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # 0012_consent: edits are compare-and-set on it (If-Match), like every editable row.
    # Server defaults only (0012's columns): rows written the old way still insert.
    version: Mapped[int] = mapped_column(Integer, server_default="1")


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        # Case ledger, newest first, keyset-paginated by (posted_on, id).
        Index("ix_transactions_org_case_posted", "organization_id", "case_id", "posted_on", "id"),
        # Dashboards: month x category per organization, covering the summed amount.
        Index(
            "ix_transactions_org_posted_category",
            "organization_id",
            "posted_on",
            "category",
            "direction",
            "amount_cents",
        ),
        # Counterparties of a case and one counterparty's months, covering (0012_consent).
        Index(
            "ix_transactions_org_case_counterparty",
            "organization_id",
            "case_id",
            "counterparty",
            "posted_on",
            "direction",
            "currency",
            "amount_cents",
        ),
        # An account's balance by day, covering (0012_consent). The account comes first: the
        # foreign key's lookups (ON DELETE SET NULL) use it too.
        Index(
            "ix_transactions_account_posted",
            "account_id",
            "posted_on",
            "direction",
            "currency",
            "amount_cents",
            "organization_id",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("subjects.id", ondelete="SET NULL"), index=True
    )
    # Indexed by ix_transactions_account_posted (0012_consent), which starts with it.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    posted_on: Mapped[dt.date] = mapped_column(Date)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    direction: Mapped[Direction] = mapped_column(_enum(Direction))
    category: Mapped[str] = mapped_column(String(40))
    counterparty: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(String(500), default="")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The import that brought the row (0006); its statement's account tells which rows a
    # re-export of the same account overlaps.
    import_id: Mapped[int | None] = mapped_column(Integer)


class ConsentRecord(Base):
    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    subject_id: Mapped[int] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(100))
    granted_on: Mapped[dt.date] = mapped_column(Date)
    revoked_on: Mapped[dt.date | None] = mapped_column(Date)
    document_ref: Mapped[str] = mapped_column(String(200), default="")
    # 0012_consent: the lawful basis, the first day it no longer holds (null: open-ended),
    # who recorded it and when, and the version revocations compare-and-set on.
    # Server defaults only: rows written the old way (the seed at older revisions) insert.
    legal_basis: Mapped[LegalBasis] = mapped_column(_enum(LegalBasis), server_default="consent")
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, server_default="1")


class AdjudicationItem(Base):
    """A flagged transaction (or a rule hit) waiting for, or carrying, a reviewer's decision.

    ``assignee_id`` and ``claimed_until`` are the lease (0010_adjudication): the reviewer who
    claimed the item holds it while ``claimed_until`` is in the future. ``version`` is
    SQLAlchemy's version counter: every ORM update of an item is ``UPDATE ... WHERE id = ?
    AND version = ?`` with its row count checked, the compare-and-set two claims race on.
    """

    __tablename__ = "adjudication_items"
    __table_args__ = (
        # The queue: pending items of one organization, oldest first.
        Index(
            "ix_adjudication_org_status_created", "organization_id", "status", "created_at", "id"
        ),
        # The queue as served: most urgent first, then oldest (0010_adjudication).
        Index("ix_adjudication_org_status_priority", "organization_id", "status", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("transactions.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[AdjudicationStatus] = mapped_column(
        _enum(AdjudicationStatus), default=AdjudicationStatus.PENDING
    )
    reason: Mapped[str] = mapped_column(String(500), default="")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # 0010_adjudication: who flagged it (null: a rule), how urgent (1 most, 5 least), the
    # lease's end, the decision and its reason, and the version counter.
    flagged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    priority: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome))
    decision_reason: Mapped[str | None] = mapped_column(String(2000))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    transaction: Mapped[Transaction | None] = relationship(lazy="raise")

    __mapper_args__ = {"version_id_col": version}


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40), default="case_summary")
    status: Mapped[ReportStatus] = mapped_column(_enum(ReportStatus), default=ReportStatus.PENDING)
    file_path: Mapped[str] = mapped_column(String(500), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    job_id: Mapped[int | None] = mapped_column(BigInteger)  # the job rendering it (0003_jobs)


class OutboxMessage(Base):
    """A notification the default sender "sent": what an SMS or e-mail gateway would get."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_org_id", "organization_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    channel: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImportStatus(enum.StrEnum):
    QUEUED = "queued"  # uploaded; its job has not started
    RUNNING = "running"
    IMPORTED = "imported"
    REJECTED = "rejected"  # bad rows under the all-or-nothing policy: nothing stored
    FAILED = "failed"  # the file could not be read at all


class ImportRecord(Base):
    """One CSV file imported into a case (0003_rollups). ``claim`` is the content hash once
    the rows are committed: unique per case, so the same file cannot be imported twice.
    Uploaded through the API it is ``queued`` with its job (``job_id``) until a worker runs
    it; the CLI imports at once."""

    __tablename__ = "imports"
    __table_args__ = (
        UniqueConstraint("case_id", "claim", name="uq_imports_case_claim"),
        Index("ix_imports_org_case_id", "organization_id", "case_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    content_sha256: Mapped[str] = mapped_column(String(64))
    claim: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[ImportStatus] = mapped_column(_enum(ImportStatus))
    policy: Mapped[str] = mapped_column(String(20))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    encoding: Mapped[str] = mapped_column(String(20), default="")
    delimiter: Mapped[str] = mapped_column(String(4), default="")
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_imported: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    job_id: Mapped[int | None] = mapped_column(BigInteger)  # the job running it (0004)
    # 0006: what was read (csv, ofx, camt.053, mt940, qif), the statement's account, the
    # mapping used (JSON) and what the forensic checks found (JSON: trailer, balance
    # breaks, overlap with earlier imports).
    # (Imports recorded before 0006 have format csv and none of the others.)
    format: Mapped[str] = mapped_column(String(20), default="csv", server_default="csv")
    account: Mapped[str | None] = mapped_column(String(64), default="")
    mapping: Mapped[str | None] = mapped_column(Text, default="")
    findings: Mapped[str | None] = mapped_column(Text, default="")


class ImportProfile(Base):
    """How to read one bank's statements (a saved mapping), for an organization: later
    files whose header has its ``fingerprint`` are read with it, without questions (0006)."""

    __tablename__ = "import_profiles"
    __table_args__ = (
        UniqueConstraint("organization_id", "name", name="uq_import_profiles_org_name"),
        Index("ix_import_profiles_org_fingerprint", "organization_id", "fingerprint"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(100))
    fingerprint: Mapped[str] = mapped_column(String(64))
    mapping: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ImportReject(Base):
    """One rejected row (or cell) of an import: the downloadable rejects report."""

    __tablename__ = "import_rejects"
    __table_args__ = (Index("ix_import_rejects_import_row", "import_id", "row_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"))
    row_number: Mapped[int] = mapped_column(Integer)
    column: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(300))
    value: Mapped[str] = mapped_column(String(200), default="")


class RefreshToken(Base):
    """A refresh token issued (by its JWT id, ``jti``): exchanged once for the next of its
    ``family`` (one sign-in); a second use revokes the whole family, and so does logging out
    (0009_refresh_tokens)."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family", "family"),)

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    family: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Note(Base):
    """An analyst's note on a case (0011_evidence): its author edits it (``version``, the
    If-Match the API compares), its author or an admin deletes it."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Evidence(Base):
    """A file attached to a case (0011_evidence). The file lives in the data directory under
    its content's SHA-256 (:func:`casebook.evidence.stored_path`); ``filename`` is only for
    display. A deleted item keeps its row (``deleted_at``: a tombstone) and its custody
    history; only the file goes. ``verified_at``/``verify_status`` are the last check's."""

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    verify_status: Mapped[str | None] = mapped_column(String(20))
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)


class CustodyEvent(Base):
    """One link of an evidence item's chain of custody (0011_evidence): ``uploaded``,
    ``downloaded``, ``verified`` (``outcome`` ok, mismatch or missing) or ``deleted``, by
    whom (``actor``: ``user:{id}`` or ``cli:{command}``), when, and the SHA-256 seen then
    (empty when there was no file to hash). Rows are only ever inserted."""

    __tablename__ = "evidence_custody"
    __table_args__ = (Index("ix_evidence_custody_evidence_id_id", "evidence_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    evidence_id: Mapped[int] = mapped_column(ForeignKey("evidence.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20), default="")
    sha256: Mapped[str] = mapped_column(String(64), default="")
    actor: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# Ids are never reused, on SQLite either (AUTOINCREMENT; migration 0008_ids_never_reused):
# a deleted row's id named by a link, a job or a cached answer never names another row.
for _table in Base.metadata.tables.values():
    if [column.name for column in _table.primary_key.columns] == ["id"]:
        _table.dialect_kwargs["sqlite_autoincrement"] = True
