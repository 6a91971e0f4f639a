"""Database access: the only package that imports SQLAlchemy engine internals."""

from lockstep.db.bulk import BulkListener, add_bulk_listener, bulk_insert
from lockstep.db.columns import Columns, Memo
from lockstep.db.database import Database, in_write_transaction
from lockstep.db.engine import Engines, create_engines
from lockstep.db.instrumentation import StatementCounter, count_statements
from lockstep.db.migrations import current_revision, head_revision, upgrade

__all__ = [
    "BulkListener",
    "Columns",
    "Database",
    "Engines",
    "Memo",
    "StatementCounter",
    "add_bulk_listener",
    "bulk_insert",
    "count_statements",
    "create_engines",
    "current_revision",
    "head_revision",
    "in_write_transaction",
    "upgrade",
]
