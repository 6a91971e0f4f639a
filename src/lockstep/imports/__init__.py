"""CSV ingestion: streamed to disk, encoding and delimiter detected, headers mapped, every
row validated, written in one transaction through the writer (so the change feed and the
rollups see it), with a rejects report. See ``docs/imports.md``.

    spool = Spool.of_path("ledger.csv")                 # or SpoolWriter fed by an upload
    outcome = await ingest(db, spool, schema, write_batch, policy=ImportPolicy.ALL_OR_NOTHING)
"""

from lockstep.imports import parsers
from lockstep.imports.dialect import Dialect, sniff
from lockstep.imports.ingest import (
    ImportOutcome,
    ImportPolicy,
    ImportProgress,
    ingest,
)
from lockstep.imports.schema import Binding, ImportField, ImportSchema, Rejection, normalize
from lockstep.imports.spool import Spool, SpoolWriter

__all__ = [
    "Binding",
    "Dialect",
    "ImportField",
    "ImportOutcome",
    "ImportPolicy",
    "ImportProgress",
    "ImportSchema",
    "Rejection",
    "Spool",
    "SpoolWriter",
    "ingest",
    "normalize",
    "parsers",
    "sniff",
]
