"""Database access: the only package that imports SQLAlchemy engine internals, and the one
write path every consumer of writes observes (:mod:`lockstep.db.writes`)."""

from lockstep.db.availability import OUTAGE_TYPES, database_outage
from lockstep.db.bulk import bulk_insert
from lockstep.db.columns import Columns, Memo
from lockstep.db.database import Database, in_write_transaction
from lockstep.db.engine import Engines, create_engines
from lockstep.db.executions import WRITES_OPTION
from lockstep.db.instrumentation import StatementCounter, count_statements
from lockstep.db.interception import Interception, interception_of
from lockstep.db.migrations import current_revision, head_revision, upgrade
from lockstep.db.statements import Target, classify
from lockstep.db.writes import (
    MISSING,
    Image,
    Operation,
    Phase,
    RowWrite,
    StatementWrite,
    Write,
    WriteObserver,
)

__all__ = [
    "MISSING",
    "OUTAGE_TYPES",
    "WRITES_OPTION",
    "Columns",
    "Database",
    "Engines",
    "Image",
    "Interception",
    "Memo",
    "Operation",
    "Phase",
    "RowWrite",
    "StatementCounter",
    "StatementWrite",
    "Target",
    "Write",
    "WriteObserver",
    "bulk_insert",
    "classify",
    "count_statements",
    "create_engines",
    "current_revision",
    "database_outage",
    "head_revision",
    "in_write_transaction",
    "interception_of",
    "upgrade",
]
