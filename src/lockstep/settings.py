"""Settings read from the environment (prefix ``LOCKSTEP_``) and validated at start-up.

Build them with :func:`load_settings`: a bad value raises :class:`ConfigurationError` whose
message names the environment variable to fix, instead of a pydantic traceback.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, overload

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lockstep.exceptions import ConfigurationError

ENV_PREFIX = "LOCKSTEP_"

S = TypeVar("S", bound="Settings")


class Settings(BaseSettings):
    """Every knob lockstep reads. Subclass it to add an application's own settings."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    default_database_file: ClassVar[str] = "lockstep.db"

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")

    # Database. None means the embedded SQLite file ``<data_dir>/<default_database_file>``.
    database_url: str = ""
    db_pool_size: int = Field(5, ge=1, le=1000)
    db_max_overflow: int = Field(10, ge=0, le=1000)
    db_pool_timeout: float = Field(10.0, gt=0)
    db_pool_recycle: int = Field(1800, ge=-1)
    db_pool_pre_ping: bool = True
    db_connect_timeout: float = Field(5.0, gt=0)
    db_statement_timeout_ms: int = Field(30_000, ge=0)
    sqlite_busy_timeout_ms: int = Field(5_000, ge=0)
    sqlite_read_pool_size: int = Field(4, ge=1, le=64)
    # Page cache of the writer connection (readers keep SQLite's 2 MB each). A transaction
    # whose pages outgrow it spills them to the WAL mid-transaction: an import of 150k rows
    # took twice as long with the default.
    sqlite_writer_cache_mb: int = Field(64, ge=2, le=65_536)
    slow_query_ms: float = Field(200.0, ge=0)

    # Redis (scale-out mode). Empty means in-process memory for cache, fan-out and locks.
    redis_url: str = ""
    redis_timeout: float = Field(0.5, gt=0, le=30)
    # Consecutive failed Redis calls that open the circuit breaker, and how long it stays
    # open (requests served from the database at once) before one call probes Redis again.
    redis_breaker_failures: int = Field(3, ge=1, le=1000)
    redis_breaker_open_seconds: float = Field(1.0, gt=0, le=300)
    # How long a process trusts its local stamp mirror after Redis last proved it complete
    # (heartbeats run four times per lease). A writer whose bump failed waits out up to one
    # lease before answering. At most LOCKSTEP_REDIS_TIMEOUT; the same in every process.
    # Unset: half of LOCKSTEP_REDIS_TIMEOUT (see ``mirror_lease``).
    cache_mirror_lease_seconds: float | None = Field(None, gt=0, le=30)
    cache_fail_closed: bool = False

    # Change feed.
    feed_poll_seconds: float = Field(1.0, gt=0, le=60)

    # Realtime (the Centrifugo client protocol; see docs/realtime.md).
    realtime_ping_seconds: float = Field(25.0, gt=0, le=600)  # server pings `{}` this often
    realtime_pong_seconds: float = Field(8.0, gt=0, le=600)  # no pong this long after: 3012
    realtime_client_queue_bytes: int = Field(1024 * 1024, ge=1024)  # past it: 3008 slow
    realtime_max_frame_bytes: int = Field(64 * 1024, ge=1024)  # a client frame past it: 3501
    realtime_channel_limit: int = Field(128, ge=1)  # subscriptions per connection (106)
    realtime_history_size: int = Field(300, ge=1)  # publications kept per channel
    realtime_history_seconds: float = Field(86_400.0, gt=0)  # and for how long
    realtime_check_seconds: float = Field(1.0, gt=0, le=60)  # tops read for missed pubs

    # Observability.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    access_log: bool = True
    request_id_header: str = "X-Request-ID"
    metrics_multiprocess_dir: Path | None = None
    readiness_timeout: float = Field(3.0, gt=0)  # seconds each /ready check may take

    # HTTP.
    hsts_seconds: int = Field(0, ge=0)
    # Request bodies: the default limit, and the limit for requests without valid
    # credentials (a login form fits; a 100 MB body is refused before it is read).
    max_body_bytes: int = Field(1024 * 1024, ge=1)
    anonymous_max_body_bytes: int = Field(64 * 1024, ge=1)
    max_header_bytes: int = Field(32 * 1024, ge=1024)  # all request headers together
    # Rate limits (the app declares them; this switches them all off, e.g. for a fuzz run).
    rate_limits_enabled: bool = True
    # Peers whose X-Forwarded-For is believed: comma-separated addresses or networks.
    trusted_proxies: str = ""

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an address or a network") from None
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        """``LOCKSTEP_TRUSTED_PROXIES`` as a list."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    shutdown_timeout: float = Field(10.0, gt=0)

    # Jobs.
    jobs_poll_seconds: float = Field(1.0, gt=0, le=60)  # polling fallback; abort latency
    jobs_lease_seconds: float = Field(30.0, gt=0)
    jobs_heartbeat_seconds: float = Field(10.0, gt=0)  # at most a third of the lease
    jobs_concurrency: int = Field(10, ge=1, le=1000)  # slots per queue per worker
    jobs_shutdown_seconds: float = Field(30.0, ge=0)  # drain time before releasing jobs
    jobs_process_workers: int = Field(0, ge=0, le=256)  # 0: one per CPU
    jobs_result_ttl_seconds: float = Field(86_400.0, ge=0)
    jobs_retention_seconds: float = Field(7 * 86_400.0, ge=0)  # finished jobs kept
    jobs_metrics_seconds: float = Field(15.0, gt=0)
    jobs_listen: bool = True  # LISTEN/NOTIFY on PostgreSQL (off behind a pooler)
    jobs_embedded_worker: bool = True  # the app runs a worker in embedded (SQLite) mode

    @field_validator("jobs_heartbeat_seconds")
    @classmethod
    def _jobs_heartbeat_within_lease(cls, value: float, info: ValidationInfo) -> float:
        lease = info.data.get("jobs_lease_seconds")
        if lease is not None and value * 3 > lease:
            raise ValueError(
                f"must be at most a third of LOCKSTEP_JOBS_LEASE_SECONDS ({lease}), "
                "or a slow heartbeat lets a live lease expire"
            )
        return value

    @field_validator("cache_mirror_lease_seconds")
    @classmethod
    def _lease_within_timeout(cls, value: float | None, info: ValidationInfo) -> float | None:
        timeout = info.data.get("redis_timeout")
        if value is not None and timeout is not None and value > timeout:
            raise ValueError(
                f"must be at most LOCKSTEP_REDIS_TIMEOUT ({timeout}): a writer whose bump "
                "timed out must not answer while another process may still trust its mirror"
            )
        return value

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if not self.database_url:
            path = (self.data_dir / self.default_database_file).resolve()
            object.__setattr__(self, "database_url", f"sqlite+aiosqlite:///{path}")
        scheme = self.database_url.split("://", 1)[0]
        if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError(
                f"database_url scheme {scheme!r} is not supported; use "
                "'sqlite+aiosqlite:///path/to/file.db' or 'postgresql+asyncpg://user@host/db'"
            )
        return self

    @property
    def mirror_lease(self) -> float:
        """``LOCKSTEP_CACHE_MIRROR_LEASE_SECONDS``, or half of ``LOCKSTEP_REDIS_TIMEOUT``."""
        if self.cache_mirror_lease_seconds is not None:
            return self.cache_mirror_lease_seconds
        return self.redis_timeout / 2

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@overload
def load_settings(**overrides: Any) -> Settings: ...
@overload
def load_settings(cls: type[S], /, **overrides: Any) -> S: ...
def load_settings(cls: type[Settings] = Settings, /, **overrides: Any) -> Settings:
    """Read settings from the environment, with ``overrides`` taking precedence.

    Raises :class:`ConfigurationError` naming each offending ``LOCKSTEP_*`` variable.
    """
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "database_url"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
        raise ConfigurationError(
            "invalid settings: " + "; ".join(problems), details=problems
        ) from None
