"""What a casebook process holds: settings, the database, the change feed with its cache,
and the token service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from casebook.auth import TokenService
from casebook.models import Base
from casebook.settings import CasebookSettings
from lockstep import Database, Lockstep, Tracking, head_revision

MIGRATIONS = Path(__file__).parent / "migrations"


def tracking() -> Tracking:
    """Every casebook table is captured; these columns scope cache dependencies."""
    return Tracking(
        Base.metadata,
        scopes=["organization_id", "case_id"],
        per_table={"accounts": ["subject_id"], "consent_records": ["subject_id"]},
    )


@dataclass(frozen=True, slots=True)
class Services:
    settings: CasebookSettings
    db: Database
    lockstep: Lockstep
    tokens: TokenService

    @classmethod
    def build(cls, settings: CasebookSettings) -> Services:
        tokens = TokenService(
            settings.signing_key(),
            access_minutes=settings.access_token_minutes,
            refresh_days=settings.refresh_token_days,
        )
        db = Database(settings)
        # The schema revision is part of every cache key: a migration retires old entries.
        namespace = f"casebook:{head_revision(MIGRATIONS)}"
        runtime = Lockstep(settings, db, tracking(), namespace=namespace)
        return cls(settings=settings, db=db, lockstep=runtime, tokens=tokens)
