"""lockstep: fast and never stale, from one change feed captured in the database transaction.

This namespace is the public API; applications (casebook included) import from here only.
"""

from lockstep.cache import Cache, Dependency, Row, Scope, Table
from lockstep.changes import (
    Changes,
    ChangeSet,
    Cursor,
    Tracking,
    create_change_log,
    drop_change_log,
)
from lockstep.db import Database, count_statements, current_revision, head_revision, upgrade
from lockstep.exceptions import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    CursorExpiredError,
    DatabaseUnavailableError,
    LockstepError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
    ValidationFailedError,
)
from lockstep.http import (
    JSONBytesResponse,
    Observability,
    current_request_id,
    install_observability,
)
from lockstep.http.caching import cached, precondition
from lockstep.runtime import Lockstep
from lockstep.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "Cache",
    "ChangeSet",
    "Changes",
    "ConfigurationError",
    "ConflictError",
    "Cursor",
    "CursorExpiredError",
    "Database",
    "DatabaseUnavailableError",
    "Dependency",
    "JSONBytesResponse",
    "Lockstep",
    "LockstepError",
    "NotFoundError",
    "Observability",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RateLimitedError",
    "Row",
    "Scope",
    "Settings",
    "Table",
    "Tracking",
    "ValidationFailedError",
    "__version__",
    "cached",
    "count_statements",
    "create_change_log",
    "current_request_id",
    "current_revision",
    "drop_change_log",
    "head_revision",
    "install_observability",
    "load_settings",
    "precondition",
    "upgrade",
]
