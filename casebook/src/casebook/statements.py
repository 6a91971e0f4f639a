"""How casebook reads a bank statement into a case's ledger: planning (the survey, with the
organization's saved profiles and the request's answers), profiles, and the reading itself
with its forensic checks.

* :func:`plan` surveys a file. The profile used is the one named, else the organization's
  profile whose header fingerprint matches the file's (the most recently saved); the
  profile answers what the file does not say (a date order, a decimal mark, a sign), the
  request's answers override both. A plan with questions left cannot be imported.
* :class:`Reading` turns statement rows into ledger rows batch by batch, inside the
  import's transaction: rows the ledger already holds for the same account (an earlier
  import of an overlapping statement) are left out and listed; the running balance is
  checked where the file has one; its :meth:`Reading.findings` are stored with the import.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from casebook.models import Case, ImportProfile, ImportRecord, Transaction
from lockstep import (
    BalanceCheck,
    Columns,
    ImportOutcome,
    ImportSchema,
    NotFoundError,
    Overlap,
    Spool,
    StatementMapping,
    Survey,
    ValidationFailedError,
    bulk_insert,
    layout,
    statement_schema,
    survey,
)

LEDGER = Transaction.metadata.tables["transactions"]
DEFAULT_CURRENCY = "EUR"
UNCATEGORIZED = "uncategorized"
SHOWN_FINDINGS = 200  # overlapping rows and balance breaks listed per import (all counted)


def _ledger(batch: Columns, currency: str) -> Columns:
    """A statement batch (one field per role, signed amounts) as ledger columns."""
    amounts = batch["amount"]
    currencies = batch["currency"]
    return Columns(
        {
            "posted_on": batch["booking_date"],
            "amount_cents": list(map(abs, amounts)),
            "direction": ["debit" if a < 0 else "credit" for a in amounts],
            "currency": currencies
            if None not in currencies
            else [c or currency for c in currencies],
            "category": [
                (c or k or UNCATEGORIZED)[:40]
                for c, k in zip(batch["category"], batch["kind"], strict=True)
            ],
            "counterparty": batch["counterparty"],
            "description": [
                d or ref for d, ref in zip(batch["description"], batch["reference"], strict=True)
            ],
            "flagged": [False] * len(batch),
        },
        len(batch),
    )


def parse_answers(pairs: Sequence[str]) -> dict[str, str]:
    """``["amount=Betrag", "date_order=dmy"]`` as a dict; ValidationFailedError names a
    pair without ``=``."""
    answers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationFailedError(
                f"{pair!r} is not role=column or setting=value (like amount=Betrag or "
                "date_order=dmy)",
                details=[
                    {"loc": ["query", "map"], "msg": "expected key=value", "type": "value_error"}
                ],
            )
        answers[key.strip()] = value.strip()
    return answers


@dataclass(frozen=True, slots=True)
class Plan:
    """What the survey found, and the profile that answered it (if any)."""

    survey: Survey
    profile: ImportProfile | None

    def as_dict(self) -> dict[str, Any]:
        out = self.survey.as_dict()
        out["profile"] = (
            {"id": self.profile.id, "name": self.profile.name} if self.profile else None
        )
        return out


async def plan(
    session: AsyncSession,
    organization_id: int,
    spool: Spool,
    *,
    answers: Mapping[str, str] | None = None,
    profile: str | None = None,
    full: bool = False,
) -> Plan:
    """Survey ``spool`` with the organization's profiles and ``answers``. Raises
    NotFoundError (a named profile that does not exist), ValidationFailedError (the file
    cannot be read, a named profile was made for another header, an answer names no
    column)."""
    profiles = (
        await session.scalars(
            select(ImportProfile)
            .where(ImportProfile.organization_id == organization_id)
            .order_by(ImportProfile.updated_at.desc(), ImportProfile.id.desc())
        )
    ).all()
    answers = answers or {}
    chosen: ImportProfile | None = None
    if profile:
        chosen = next((p for p in profiles if p.name == profile), None)
        if chosen is None:
            raise NotFoundError(f"no import profile named {profile!r}")
    first = await asyncio.to_thread(survey, spool, answers=answers, full=full)
    fingerprint = first.mapping.fingerprint
    if chosen is None:
        chosen = next((p for p in profiles if p.fingerprint == fingerprint), None)
    elif chosen.fingerprint != fingerprint:
        raise ValidationFailedError(
            f"the profile {chosen.name!r} was made for another header than this file's "
            f"({', '.join(first.mapping.labels().values()) or 'no header'})",
            details=[
                {"loc": ["file"], "msg": "header fingerprint differs", "type": "profile_mismatch"}
            ],
        )
    if chosen is None:
        return Plan(first, None)
    saved = StatementMapping.from_dict(json.loads(chosen.mapping))
    found = await asyncio.to_thread(survey, spool, profile=saved, answers=answers, full=full)
    return Plan(found, chosen)


def unanswered(found: Plan) -> ValidationFailedError:
    questions = found.survey.questions
    return ValidationFailedError(
        "the file cannot be imported before these are answered (preview it, or send the "
        "answers as map=key=value): " + " ".join(q.text for q in questions),
        details={
            "questions": [q.as_dict() for q in questions],
            "mapping": found.survey.mapping.to_dict(),
        },
    )


async def save_profile(
    session: AsyncSession,
    organization_id: int,
    name: str,
    mapping: StatementMapping,
    created_by_id: int | None = None,
) -> ImportProfile:
    """Create or replace the organization's profile ``name``."""
    name = name.strip()[:100]
    if not name:
        raise ValidationFailedError("a profile needs a name")
    profile = await session.scalar(
        select(ImportProfile).where(
            ImportProfile.organization_id == organization_id, ImportProfile.name == name
        )
    )
    if profile is None:
        profile = ImportProfile(
            organization_id=organization_id, name=name, created_by_id=created_by_id
        )
        session.add(profile)
    profile.fingerprint = mapping.fingerprint
    profile.mapping = json.dumps(mapping.to_dict())
    profile.updated_at = dt.datetime.now(dt.UTC)
    await session.flush()
    return profile


@dataclass(slots=True)
class Reading:
    """One import's way through its file: the schema, the ledger's constant columns, and
    the forensic checks, batch by batch, in the import's transaction."""

    record_id: int
    organization_id: int
    case_id: int
    mapping: StatementMapping
    created_at: dt.datetime
    balance: BalanceCheck = field(default_factory=BalanceCheck)
    overlap: Overlap = field(default_factory=Overlap)
    overlapping: list[dict[str, Any]] = field(default_factory=list)
    overlapping_count: int = 0
    unmoved: list[int] = field(default_factory=list)  # lines of rows with a zero amount
    _locked: bool = False

    @classmethod
    def of(cls, record: ImportRecord, created_at: dt.datetime) -> Reading:
        mapping = StatementMapping.from_dict(json.loads(record.mapping or "{}"))  # _run fills it
        return cls(record.id, record.organization_id, record.case_id, mapping, created_at)

    @property
    def schema(self) -> ImportSchema:
        return statement_schema(self.mapping, line_field="line")

    @property
    def options(self) -> dict[str, Any]:
        """``ingest``'s keywords for this file: its header row, labels and trailer."""
        return layout(self.mapping)

    async def write(self, session: AsyncSession, batch: Columns) -> None:
        if not self._locked:
            # Imports into one case run one at a time (PostgreSQL; SQLite has one writer
            # anyway), so two overlapping statements cannot both miss each other's rows.
            await session.execute(select(Case.id).where(Case.id == self.case_id).with_for_update())
            self._locked = True
        lines, amounts = batch["line"], batch["amount"]
        if self.mapping.roles.get("balance") is not None:
            self.balance.feed(lines, amounts, batch["balance"])
        if 0 in amounts:
            # No money moved (an opening-balance line, a card check): no ledger row, listed.
            self.unmoved += [line for line, a in zip(lines, amounts, strict=True) if a == 0]
            batch = batch.where([a != 0 for a in amounts])
            lines, amounts = batch["line"], batch["amount"]
        rows = _ledger(batch, self.mapping.currency or DEFAULT_CURRENCY)
        texts = [f"{c} {d}" for c, d in zip(rows["counterparty"], rows["description"], strict=True)]
        await self._know(session, rows["posted_on"])
        keep = self.overlap.keep(rows["posted_on"], amounts, texts)
        if not all(keep):
            for i, kept in enumerate(keep):
                if not kept:
                    self.overlapping_count += 1
                    if len(self.overlapping) < SHOWN_FINDINGS:
                        self.overlapping.append(
                            {"line": lines[i], "date": rows["posted_on"][i].isoformat(),
                             "amount_cents": amounts[i], "text": texts[i].strip()}
                        )  # fmt: skip
            rows = rows.where(keep)
        rows.fill("organization_id", self.organization_id)
        rows.fill("case_id", self.case_id)
        rows.fill("version", 1)
        rows.fill("created_at", self.created_at)
        rows.fill("import_id", self.record_id)
        # The bulk path: the change feed and the rollups see the rows, the driver gets them
        # a column at a time, without SQLAlchemy's per-row parameter handling.
        if len(rows):
            await bulk_insert(session, LEDGER, rows)

    async def _know(self, session: AsyncSession, dates: Sequence[dt.date]) -> None:
        """Load the rows earlier imports of this account stored on ``dates`` not seen yet."""
        wanted = self.overlap.unknown_dates(dates)
        if not wanted:
            return
        t = Transaction
        stored = await session.execute(
            select(t.posted_on, t.amount_cents, t.direction, t.counterparty, t.description)
            .join(ImportRecord, ImportRecord.id == t.import_id)
            .where(
                t.organization_id == self.organization_id,
                t.case_id == self.case_id,
                t.posted_on.between(min(wanted), max(wanted)),
                t.import_id != self.record_id,
                ImportRecord.account == self.mapping.account[:64],
            )
        )
        self.overlap.know(
            wanted,
            (
                (day, -cents if direction == "debit" else cents, f"{party} {text}")
                for day, cents, direction, party, text in stored
            ),
        )

    def findings(self, outcome: ImportOutcome) -> dict[str, Any]:
        """What the checks found, for the import's record (JSON)."""
        balance = self.balance
        return {
            "account": self.mapping.account,
            "trailer": [{"line": line, "text": text} for line, text in outcome.trailer],
            "overlap": {"count": self.overlapping_count, "rows": self.overlapping},
            "no_movement": {"count": len(self.unmoved), "lines": self.unmoved[:SHOWN_FINDINGS]},
            "balance": {
                "checked": balance.checked,
                "order": balance.order,
                "never_agrees": balance.never_agrees,
                "breaks": balance.count if not balance.never_agrees else 0,
                "rows": [
                    {"line": b.line, "expected_cents": b.expected, "found_cents": b.found}
                    for b in balance.breaks[:SHOWN_FINDINGS]
                ]
                if not balance.never_agrees
                else [],
            },
        }

    @property
    def left_out(self) -> int:
        """Rows read and valid but not stored: already imported, or without a movement."""
        return self.overlapping_count + len(self.unmoved)

    def summary(self) -> str:
        """The checks' findings in words, for the import's message ("" when clean)."""
        parts = []
        if self.overlapping_count:
            parts.append(
                f"{self.overlapping_count} already imported from an overlapping statement "
                "(left out)"
            )
        if self.unmoved:
            parts.append(f"{len(self.unmoved)} rows without a movement (amount 0, left out)")
        if self.balance.count and not self.balance.never_agrees:
            parts.append(f"{self.balance.count} running-balance breaks")
        return "; " + "; ".join(parts) if parts else ""
