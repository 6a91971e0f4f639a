"""Streamed ingestion of CSV files and bank statements: spooled to disk, encoding, dialect,
header and trailer detected, columns mapped to roles, numbers and dates decided per file,
every row validated, written in one transaction through the writer (so the change feed and
the rollups see it), with a rejects report. See ``docs/imports.md``.

    spool = Spool.of_path("ledger.csv")                 # or SpoolWriter fed by an upload
    outcome = await ingest(db, spool, schema, write_batch, policy=ImportPolicy.ALL_OR_NOTHING)

    found = survey(spool, profile=saved)                # a bank statement: what it holds
    found.questions                                     # what it will not guess
    mapping = found.mapping.answered({"date_order": "dmy"})
    await ingest(db, spool, statement_schema(mapping), write_batch,
                 header_row=mapping.header_row, labels=..., trailer=...)
"""

from lockstep.imports import parsers
from lockstep.imports.dialect import Dialect, sniff
from lockstep.imports.forensics import BalanceBreak, BalanceCheck, Overlap
from lockstep.imports.ingest import (
    ImportOutcome,
    ImportPolicy,
    ImportProgress,
    ingest,
)
from lockstep.imports.mapping import Question, StatementMapping
from lockstep.imports.schema import Binding, ImportField, ImportSchema, Rejection, normalize
from lockstep.imports.source import CANONICAL, detect
from lockstep.imports.spool import Spool, SpoolWriter
from lockstep.imports.statement import layout, statement_schema
from lockstep.imports.survey import Survey, survey

__all__ = [
    "CANONICAL",
    "BalanceBreak",
    "BalanceCheck",
    "Binding",
    "Dialect",
    "ImportField",
    "ImportOutcome",
    "ImportPolicy",
    "ImportProgress",
    "ImportSchema",
    "Overlap",
    "Question",
    "Rejection",
    "Spool",
    "SpoolWriter",
    "StatementMapping",
    "Survey",
    "detect",
    "ingest",
    "layout",
    "normalize",
    "parsers",
    "sniff",
    "statement_schema",
    "survey",
]
