"""casebook's settings: lockstep's plus authentication (same ``LOCKSTEP_`` prefix)."""

from __future__ import annotations

import secrets
from typing import ClassVar

from pydantic import Field, field_validator

from lockstep import ConfigurationError, RateLimit, Settings


class CasebookSettings(Settings):
    """Settings for the casebook reference application."""

    default_database_file: ClassVar[str] = "casebook.db"

    jwt_secret: str = ""
    access_token_minutes: int = Field(15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(7, ge=1, le=90)
    serve_ui: bool = True
    # How long a reviewer's claim on an adjudication item lasts (a claim renews it).
    adjudication_lease_minutes: int = Field(15, ge=1, le=24 * 60)
    import_max_bytes: int = Field(100 * 1024 * 1024, ge=1)  # largest CSV upload accepted
    evidence_max_bytes: int = Field(50 * 1024 * 1024, ge=1)  # largest evidence file accepted
    # Password checks: threads running them at once, and how many more may wait for one
    # (past that a sign-in is a 503 + Retry-After at once).
    password_workers: int = Field(2, ge=1, le=64)
    password_queue: int = Field(64, ge=0, le=10_000)
    # Rate limits ("N/unit" or "N/K units"): every API request per user (sliding window),
    # sign-ins and refreshes per client address (token bucket: bursts, then a steady
    # rate), sign-ins per account whatever the address (sliding window: the lockout).
    rate_limit_api: str = "1200/minute"
    rate_limit_login_address: str = "30/minute"
    rate_limit_login_account: str = "10/15 minutes"

    @field_validator("rate_limit_api", "rate_limit_login_address", "rate_limit_login_account")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        RateLimit.parse("check", value)
        return value

    def rate_limits(self) -> list[RateLimit]:
        """The limits every request is counted under, by the middleware."""
        return [
            RateLimit.parse(
                "api", self.rate_limit_api, by=("user",), routes=("* /api/{rest:path}",)
            ),
            RateLimit.parse(
                "login",
                self.rate_limit_login_address,
                algorithm="bucket",
                by=("address",),
                routes=(
                    "POST /api/v1/auth/token",
                    "POST /api/v1/auth/refresh",
                    "POST /api/v1/auth/logout",
                ),
            ),
        ]

    def account_limit(self) -> RateLimit:
        """Sign-in attempts per account (the handler counts them: only it knows the name)."""
        return RateLimit.parse("account", self.rate_limit_login_account, by=())

    def signing_key(self) -> str:
        """The JWT signing key.

        Production requires ``LOCKSTEP_JWT_SECRET``. Elsewhere a random key is generated once
        and kept in ``<data_dir>/.jwt_secret`` so every process of one deployment agrees.
        """
        if self.jwt_secret:
            if len(self.jwt_secret) < 32:
                raise ConfigurationError("LOCKSTEP_JWT_SECRET must be at least 32 characters")
            return self.jwt_secret
        if self.env == "production":
            raise ConfigurationError("LOCKSTEP_JWT_SECRET is required when LOCKSTEP_ENV=production")
        path = self.data_dir / ".jwt_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()
