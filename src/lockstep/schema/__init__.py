"""lockstep's own tables, in numbered revisions whose DDL never changes once released.

An application's migrations name the revision they bring each set of tables to
(``CHANGE_LOG_TABLES.upgrade(op, to=1)``); :func:`check_tables` says at start-up when the
database is behind the code. The sets themselves live with their packages
(``lockstep.changes``, ``lockstep.jobs``); see ``docs/database.md``.
"""

from lockstep.schema.check import check_tables, mismatch, table_revisions
from lockstep.schema.registry import meta_table
from lockstep.schema.revision import Revision, VersionedTables, table_metadata

__all__ = [
    "Revision",
    "VersionedTables",
    "check_tables",
    "meta_table",
    "mismatch",
    "table_metadata",
    "table_revisions",
]
