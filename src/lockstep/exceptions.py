"""One exception tree for lockstep, rooted at :class:`LockstepError`.

Every error carries a stable machine-readable ``code`` and, where it reaches HTTP, the status
the error envelope is sent with. Messages are written for the person who has to act on them.
"""

from __future__ import annotations

from typing import Any


class LockstepError(Exception):
    """Base of every error lockstep raises on purpose."""

    code: str = "internal_error"
    status_code: int = 500
    # Seconds a client should wait before trying again: sent as ``Retry-After`` (rounded up).
    retry_after: float | None = None

    def __init__(
        self, message: str, *, details: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if retry_after is not None:
            self.retry_after = retry_after


class ConfigurationError(LockstepError):
    """A setting is missing or has a value lockstep cannot use (raised at start-up)."""

    code = "configuration_error"


class DatabaseUnavailableError(LockstepError):
    """The database could not be reached within the configured timeout (or it went away in
    the middle of a request: restart, failover, an exhausted pool). Answered 503 with
    ``Retry-After``."""

    code = "database_unavailable"
    status_code = 503
    retry_after = 2.0


class OverloadedError(LockstepError):
    """A bounded queue is full (password hashing, a worker pool): try again shortly.
    Answered 503 with ``Retry-After``, never by waiting without bound."""

    code = "overloaded"
    status_code = 503
    retry_after = 1.0


class BadRequestError(LockstepError):
    """The request is malformed in a way validation did not catch."""

    code = "bad_request"
    status_code = 400


class ValidationFailedError(LockstepError):
    """Input failed validation; ``details`` lists each failing field."""

    code = "validation_error"
    status_code = 422


class AuthenticationError(LockstepError):
    """No credentials, or credentials that do not identify anyone."""

    code = "unauthenticated"
    status_code = 401


class TokenExpiredError(AuthenticationError):
    """The credentials were valid but have expired: get a new token and try again (the
    realtime protocol answers it with code 109, which makes the SDKs refresh; over HTTP it
    is the same 401 ``unauthenticated`` as any other bad token)."""


class PermissionDeniedError(LockstepError):
    """The caller is known but may not do this."""

    code = "permission_denied"
    status_code = 403


class NotFoundError(LockstepError):
    """The resource does not exist, or is not visible to the caller (never 403 across tenants)."""

    code = "not_found"
    status_code = 404


class ConflictError(LockstepError):
    """The request conflicts with stored state (duplicate key, stale version)."""

    code = "conflict"
    status_code = 409


class PreconditionFailedError(LockstepError):
    """An ``If-Match`` precondition did not hold: someone else changed the resource."""

    code = "precondition_failed"
    status_code = 412


class RateLimitedError(LockstepError):
    """Too many requests; ``retry_after`` seconds until the next one is allowed."""

    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, retry_after: float, details: Any = None) -> None:
        super().__init__(message, details=details, retry_after=retry_after)


class CursorExpiredError(LockstepError):
    """A change-feed cursor points before the retained history (or at another database).

    The consumer must reset: reload its state from the database and continue from
    :meth:`~lockstep.changes.ChangeFeed.head`.
    """

    code = "cursor_expired"
    status_code = 409


class CacheUnavailableError(LockstepError):
    """The cache backend is unreachable and the cache was configured to fail closed."""

    code = "cache_unavailable"
    status_code = 503


class AggregateError(LockstepError):
    """A write that rollup maintenance cannot follow exactly (the message says how to write
    it instead), or a rollup that cannot be maintained as declared."""

    code = "aggregate_error"


class PayloadTooLargeError(LockstepError):
    """An upload is larger than allowed."""

    code = "payload_too_large"
    status_code = 413


class UnattributedWriteError(LockstepError):
    """A statement may write, but lockstep cannot tell which tables: it is refused before it
    runs (the message names it and how to declare its tables), so no cache, rollup or
    subscriber can miss its changes."""

    code = "unattributed_write"


class SchemaError(LockstepError):
    """The database's schema is not the one this code needs: lockstep's own tables are
    missing or at another revision, or a table the application declares was never created.
    The message says what to run."""

    code = "schema_error"
    status_code = 503
