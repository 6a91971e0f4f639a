"""The audit trail: every write to the audited tables, in its own transaction, as hash chains.

See :mod:`lockstep.audit.trail` for the guarantees, ``docs/audit.md`` for the guide.
``audit_table`` is the entries' table, for an application's own queries over its trail
(per record, per actor); append to it only through :class:`Audit`.
"""

from lockstep.audit.chain import GENESIS, Break, ChainCheck, Entry, first_break, json_value
from lockstep.audit.revisions import AUDIT_TABLES, audit_table, ensure_audit_tables
from lockstep.audit.trail import GLOBAL_CHAIN, Audit, ChainReport, acting_as, verify_chains

__all__ = [
    "AUDIT_TABLES",
    "GENESIS",
    "GLOBAL_CHAIN",
    "Audit",
    "Break",
    "ChainCheck",
    "ChainReport",
    "Entry",
    "acting_as",
    "audit_table",
    "ensure_audit_tables",
    "first_break",
    "json_value",
    "verify_chains",
]
