"""What a casebook process holds: settings, the database, the change feed with its cache,
the jobs, and the token service; and casebook as lockstep's operator CLI sees it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import Scope

from casebook import live
from casebook.audit import audit_trail
from casebook.auth import Passwords, Principal, TokenService
from casebook.models import Base
from casebook.rollups import AGGREGATES  # also puts the rollup tables in Base.metadata
from casebook.settings import CasebookSettings
from casebook.standing import Standing
from casebook.sync import mutations, scopes, shapes
from casebook.tasks import TaskState, tasks
from lockstep import (
    Aggregates,
    Database,
    Jobs,
    Lockstep,
    RateLimiter,
    Tracking,
    Worker,
    head_revision,
    load_settings,
    rate_limiter,
)
from lockstep.offline import Offline
from lockstep.realtime import Realtime

MIGRATIONS = Path(__file__).parent / "migrations"


def tracking() -> Tracking:
    """Every casebook table is captured; these columns scope cache dependencies."""
    return Tracking(
        Base.metadata,
        scopes=["organization_id", "case_id"],
        per_table={
            "accounts": ["subject_id"],
            "consent_records": ["subject_id"],
            "transactions": ["account_id"],  # an account's balance and ledger (0012)
        },
    )


def _caller(tokens: TokenService) -> Callable[[Scope], Principal | None]:
    """The principal of a request's valid bearer token, from the raw ASGI scope (before
    routing: for cached answers, body limits and rate limits)."""

    def caller(scope: Scope) -> Principal | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not token:
                    return None
                return tokens.verify_fast(token.strip())
        return None

    return caller


def _identify(caller: Callable[[Scope], Principal | None]) -> Callable[[Scope], Hashable | None]:
    """The organization of the caller: what every cached casebook route varies by, so cached
    answers can be served before routing."""

    def identify(scope: Scope) -> Hashable | None:
        principal = caller(scope)
        return principal.organization_id if principal else None

    return identify


def _user(caller: Callable[[Scope], Principal | None]) -> Callable[[Scope], Hashable | None]:
    """The user id of the caller: what per-user rate limits count by."""

    def user(scope: Scope) -> Hashable | None:
        principal = caller(scope)
        return principal.user_id if principal else None

    return user


@dataclass(frozen=True, slots=True)
class Services:
    settings: CasebookSettings
    db: Database
    lockstep: Lockstep
    tokens: TokenService
    jobs: Jobs
    offline: Offline
    realtime: Realtime
    passwords: Passwords
    identify: Callable[[Scope], Hashable | None]  # the caller's organization (body limits)
    standing: Standing  # whether a token's user is still active with the token's role
    user: Callable[[Scope], Hashable | None]  # the caller's user id (rate limits)
    limiter: RateLimiter

    @classmethod
    def build(cls, settings: CasebookSettings) -> Services:
        tokens = TokenService(
            settings.signing_key(),
            access_minutes=settings.access_token_minutes,
            refresh_days=settings.refresh_token_days,
        )
        caller = _caller(tokens)
        db, runtime, jobs, realtime, standing = _runtime(settings, tokens)
        # Cached answers before routing only for callers whose user still stands (the hook
        # needs the runtime's cache, so it is set once the runtime exists).
        runtime.http.identify = standing.identify(caller)
        # After the runtime: shape messages carry the change feed's transaction ids.
        offline = Offline(
            db,
            runtime.changes,
            shapes=shapes(standing),
            mutations=mutations(standing),
            scopes=scopes(standing, db),
            version=head_revision(MIGRATIONS) or "",
        )
        return cls(
            settings=settings,
            db=db,
            lockstep=runtime,
            tokens=tokens,
            jobs=jobs,
            offline=offline,
            realtime=realtime,
            passwords=Passwords(workers=settings.password_workers, queue=settings.password_queue),
            identify=_identify(caller),
            standing=standing,
            user=_user(caller),
            limiter=rate_limiter(settings, registry=runtime.registry),
        )

    def worker(self, **options: Any) -> Worker:
        """A job worker for casebook's tasks (see :class:`lockstep.Worker` for options)."""
        state = TaskState(self.settings, jobs=self.jobs, changes=self.lockstep.changes)
        return self.jobs.worker(state=state, **options)

    def embedded_worker(self) -> AbstractAsyncContextManager[object]:
        """The in-process worker ``casebook serve`` runs in embedded (SQLite) mode."""
        if self.settings.is_sqlite and self.settings.jobs_embedded_worker:
            return self.worker()
        return contextlib.nullcontext()


def _runtime(
    settings: CasebookSettings, tokens: TokenService | None = None
) -> tuple[Database, Lockstep, Jobs, Realtime, Standing]:
    """The database with the rollups, the audit trail, the change feed and realtime
    publishing installed, the lockstep runtime, the jobs and the users' standing: what
    every casebook process writes through."""
    db = Database(settings)
    AGGREGATES.install(db)  # dashboard rollups, maintained in every writer transaction
    audit_trail().install(db)  # who wrote what, in the writing transaction (casebook.audit)
    # The schema revision is part of every cache key: a migration retires old entries.
    namespace = f"casebook:{head_revision(MIGRATIONS)}"
    runtime = Lockstep(settings, db, tracking(), namespace=namespace)
    jobs = Jobs(db, tasks, settings, registry=runtime.registry)
    standing = Standing(db, runtime.cache, tokens)
    realtime = live.build(settings, db, jobs, standing, registry=runtime.registry)
    return db, runtime, jobs, realtime, standing


@dataclass(frozen=True, slots=True)
class OperatorView:
    """casebook as lockstep's operator CLI sees it: ``lockstep --app
    casebook.services:lockstep_app feed status`` (and ``casebook jobs|aggregates ...``,
    which are the same commands). See docs/cli.md for the attributes."""

    database: Database
    lockstep: Lockstep
    jobs: Jobs
    aggregates: Aggregates
    migrations: Path


def lockstep_app(**overrides: Any) -> OperatorView:
    """Build the operator view from the environment's settings, with ``overrides`` (the
    CLI's ``--data-dir``). It needs no signing key: the CLI authenticates no one. Its
    scans (rollup verification) are slow by nature, so the slow-query log is off unless
    asked for."""
    overrides.setdefault("slow_query_ms", 0)
    settings = load_settings(CasebookSettings, **overrides)
    db, runtime, jobs, _, _ = _runtime(settings)
    return OperatorView(db, runtime, jobs, AGGREGATES, MIGRATIONS)
