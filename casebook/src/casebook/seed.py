"""Deterministic demo data: two organizations, their users, cases, subjects and ledgers.

The same ``seed`` value always produces the same rows. Everything is written in one
transaction, so a database is either fully seeded or untouched. Rows are inserted in batches
with executemany, so 100k transactions take seconds.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, text

from casebook.auth import hash_password
from casebook.models import (
    Account,
    AdjudicationItem,
    Base,
    Case,
    ConsentRecord,
    Organization,
    Subject,
    Transaction,
    User,
)
from casebook.rollups import AGGREGATES
from lockstep import ConflictError, Database

DEMO_PASSWORD = "demo"  # noqa: S105 - documented demo credential
DEMO_USERS = [
    ("analyst@acme.test", "Ada Analyst", "analyst", 1),
    ("reviewer@acme.test", "Rui Reviewer", "reviewer", 1),
    ("admin@acme.test", "Ann Admin", "admin", 1),
    ("analyst@globex.test", "Gus Analyst", "analyst", 2),
    ("admin@globex.test", "Gia Admin", "admin", 2),
]
CASE_KINDS = ["fraud", "AML review", "audit", "embezzlement", "sanctions screening"]
CATEGORIES = [
    "wire",
    "card",
    "cash",
    "payroll",
    "rent",
    "crypto",
    "gambling",
    "travel",
    "utilities",
    "consulting",
]
COUNTERPARTIES = [
    "Northwind Ltd",
    "Contoso Bank",
    "Fabrikam Inc",
    "Tailspin Toys",
    "Wingtip",
    "Litware",
    "Proseware",
    "Adventure Works",
    "Blue Yonder",
    "Coho Winery",
]
# Subjects' names: drawn from the subject's id, not from the seed's random stream, so every
# other seeded value stays what it was.
FIRST_NAMES = ["Anna", "Luca", "Marie", "Jonas", "Sofia", "Noah", "Elena", "Karim", "Ines",
               "Tomás", "Yuki", "Oskar", "Leila", "Pieter", "Chiara", "Malik", "Greta"]  # fmt: skip
LAST_NAMES = ["Keller", "Rossi", "Dubois", "Novak", "Jensen", "García", "Okafor", "Lindqvist",
              "Moreau", "Schmidt", "Costa", "Haddad", "Brennan", "Takahashi", "Varga"]  # fmt: skip
COMPANY_WORDS = ["Alder", "Brightwater", "Crestline", "Delta Harbor", "Eastgate", "Fairmont",
                 "Greyfield", "Hollis", "Ironbridge", "Juniper", "Kestrel", "Larkspur"]  # fmt: skip
COMPANY_FORMS = ["GmbH", "Ltd", "S.A.", "AG", "LLC", "B.V.", "Holdings", "SARL", "Trading Co."]


def subject_name(kind: str, subject_id: int) -> str:
    """A plausible, deterministic name for seeded subject ``subject_id``."""
    if kind == "person":
        first = FIRST_NAMES[subject_id % len(FIRST_NAMES)]
        return f"{first} {LAST_NAMES[(subject_id * 7) % len(LAST_NAMES)]}"
    word = COMPANY_WORDS[subject_id % len(COMPANY_WORDS)]
    return f"{word} {COMPANY_FORMS[(subject_id * 5) % len(COMPANY_FORMS)]}"


BATCH = 5_000


@dataclass(frozen=True, slots=True)
class SeedResult:
    organizations: int
    users: int
    cases: int
    subjects: int
    transactions: int


async def seed(
    db: Database,
    *,
    transactions: int = 20_000,
    seed: int = 7,
    reset: bool = False,
    progress: Callable[[int], None] | None = None,
    today: dt.date | None = None,
) -> SeedResult:
    """Write the demo data set; ConflictError if data exists and ``reset`` is false.

    ``progress`` is called with the number of transactions written after each batch.
    """
    if transactions < 0:
        raise ValueError("transactions must be >= 0")
    rng = random.Random(seed)
    today = today or dt.date.today()
    password_hash = hash_password(DEMO_PASSWORD)
    n_cases = max(10, transactions // 400)
    # The bulk inserts below maintain the dashboard rollups in the same transaction.
    AGGREGATES.install(db)
    async with db.writer() as session:
        existing = await session.scalar(select(func.count()).select_from(Organization))
        if existing and not reset:
            raise ConflictError("the database already holds data; pass --reset to replace it")
        if existing:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
        await session.execute(
            insert(Organization),
            [
                {"id": 1, "slug": "acme", "name": "Acme Forensics"},
                {"id": 2, "slug": "globex", "name": "Globex Investigations"},
            ],
        )
        await session.execute(
            insert(User),
            [
                {
                    "id": i,
                    "email": email,
                    "full_name": name,
                    "role": role,
                    "organization_id": org,
                    "password_hash": password_hash,
                    "is_active": True,
                }
                for i, (email, name, role, org) in enumerate(DEMO_USERS, start=1)
            ],
        )
        case_rows, subject_rows, account_rows, consent_rows = _cases(rng, n_cases, today)
        for table, rows in (
            (Case, case_rows),
            (Subject, subject_rows),
            (Account, account_rows),
            (ConsentRecord, consent_rows),
        ):
            await session.execute(insert(table), rows)
        written = 0
        adjudications: list[dict[str, Any]] = []
        subjects_by_case: dict[int, list[dict[str, Any]]] = {}
        for s in subject_rows:
            subjects_by_case.setdefault(s["case_id"], []).append(s)
        while written < transactions:
            size = min(BATCH, transactions - written)
            rows = _transactions(rng, case_rows, subjects_by_case, written + 1, size, today)
            await session.execute(insert(Transaction), rows)
            adjudications.extend(_adjudications(rows))
            written += size
            if progress is not None:
                progress(written)
        if adjudications:
            await session.execute(insert(AdjudicationItem), adjudications)
        if db.backend == "postgresql":
            # Rows were written with explicit ids: move each id sequence past them.
            for table in Base.metadata.sorted_tables:
                if "id" not in table.c:
                    continue  # rollup tables: keyed by their groups
                await session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table.name}), false)"
                    )
                )
    return SeedResult(2, len(DEMO_USERS), len(case_rows), len(subject_rows), written)


def _adjudications(transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The review items of the flagged ``transactions``: rule hits (no user flagged them, so
    anyone may review them), pending, larger sums first."""
    return [
        {
            "organization_id": r["organization_id"],
            "case_id": r["case_id"],
            "transaction_id": r["id"],
            "reason": "flagged by rule " + r["category"],
            "flagged_by_id": None,
            "priority": _priority(r["amount_cents"]),
            "status": "pending",
        }
        for r in transactions
        if r["flagged"]
    ]


def _priority(amount_cents: int) -> int:
    """How urgent a rule hit is: 1 (most) for 10,000.00 and more, down to 4 under 100.00."""
    for priority, floor in ((1, 1_000_000), (2, 100_000), (3, 10_000)):
        if amount_cents >= floor:
            return priority
    return 4


def _cases(rng: random.Random, n_cases: int, today: dt.date) -> tuple[list[dict[str, Any]], ...]:
    cases: list[dict[str, Any]] = []
    subjects: list[dict[str, Any]] = []
    accounts: list[dict[str, Any]] = []
    consents: list[dict[str, Any]] = []
    for case_id in range(1, n_cases + 1):
        org = 1 if case_id % 5 else 2  # four in five cases belong to acme
        assignee = rng.choice([1, 3]) if org == 1 else 4
        status = rng.choice(["open", "open", "under_review", "closed"])
        opened_on = today - dt.timedelta(days=rng.randint(30, 720))
        cases.append(
            {
                "id": case_id,
                "organization_id": org,
                "reference": f"CB-{2026}-{case_id:05d}",
                "title": f"{rng.choice(COUNTERPARTIES)} {rng.choice(CASE_KINDS)}",
                "description": "",
                "status": status,
                "priority": rng.randint(1, 5),
                "assignee_id": assignee,
                "version": 1,
                "opened_on": opened_on,
                "closed_on": opened_on + dt.timedelta(days=20) if status == "closed" else None,
            }
        )
        for _ in range(rng.randint(2, 4)):
            sid = len(subjects) + 1
            kind = rng.choice(["person", "company"])
            subjects.append(
                {
                    "id": sid,
                    "organization_id": org,
                    "case_id": case_id,
                    "kind": kind,
                    "name": subject_name(kind, sid),
                    "country": rng.choice(["DE", "FR", "GB", "US", "CH"]),
                    "risk_level": rng.randint(1, 5),
                    "notes": "",
                    "version": 1,
                }
            )
            accounts.append(
                {
                    "id": sid,
                    "organization_id": org,
                    "subject_id": sid,
                    "institution": rng.choice(COUNTERPARTIES[:5]),
                    "currency": "EUR",
                    "number_masked": f"****{rng.randint(0, 9999):04d}",
                }
            )
            granted_on = today - dt.timedelta(days=rng.randint(1, 700))
            # Every sixth subject's consent was revoked a month after it was granted (no rng
            # draw: the rest of the demo data stays as it was).
            revoked_on = granted_on + dt.timedelta(days=30) if sid % 6 == 0 else None
            consents.append(
                {
                    "organization_id": org,
                    "subject_id": sid,
                    "purpose": "investigation",
                    "granted_on": granted_on,
                    "revoked_on": revoked_on if revoked_on and revoked_on <= today else None,
                }
            )
    return cases, subjects, accounts, consents


def _transactions(
    rng: random.Random,
    cases: list[dict[str, Any]],
    subjects_by_case: dict[int, list[dict[str, Any]]],
    first_id: int,
    size: int,
    today: dt.date,
) -> list[dict[str, Any]]:
    rows = []
    for txn_id in range(first_id, first_id + size):
        case = rng.choice(cases)
        subject = rng.choice(subjects_by_case[case["id"]])
        category = rng.choice(CATEGORIES)
        rows.append(
            {
                "id": txn_id,
                "organization_id": case["organization_id"],
                "case_id": case["id"],
                "subject_id": subject["id"],
                "account_id": subject["id"],
                "posted_on": today - dt.timedelta(days=rng.randint(0, 730)),
                "amount_cents": int(rng.lognormvariate(9, 1.4)) + 1,
                "currency": "EUR",
                "direction": rng.choice(["debit", "credit"]),
                "category": category,
                "counterparty": rng.choice(COUNTERPARTIES),
                "description": "",
                "flagged": rng.random() < 0.03,
                "version": 1,
            }
        )
    return rows
