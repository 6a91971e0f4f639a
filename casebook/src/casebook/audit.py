"""casebook's audit trail: every write of its tables, by whom, as tamper-evident chains.

lockstep's :class:`~lockstep.Audit` observes casebook's one write path (installed on every
process's database: servers, workers, the CLI), one hash chain per organization. What is
recorded: every table of :data:`casebook.models.Base` but the rollups (derived from the
ledger, re-derivable) and ``refresh_tokens`` (sign-in bookkeeping, token ids an append-only
log must not keep); never ``password_hash``, ``updated_at`` or ``version``.

Who: ``user:{id}`` for a request carrying a valid access token (:class:`ActingUser` sets it
around the request), ``job:{task}`` for a job, ``cli:{command}`` for a CLI command; entries
without an actor are writes made by none of these (a sign-in's refresh token is not audited;
the seed writes through a database of its own, before any trail).

Reads: :func:`case_entries` (every entry touching a case: the case row, rows now in it,
rows once inserted into or deleted from it, statements naming it, and the summaries of a
transaction that wrote any of these — an import's rows) and :func:`user_entries`
(what one user wrote), both within the caller's organization's chain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, String, and_, cast, or_, select, tuple_
from starlette.types import ASGIApp, Receive, Scope, Send

from casebook.models import (
    Account,
    AdjudicationItem,
    Base,
    ConsentRecord,
    CustodyEvent,
    Evidence,
    ImportRecord,
    Note,
    Report,
    Subject,
    Transaction,
)
from casebook.rollups import AGGREGATES
from lockstep import Audit, acting_as
from lockstep.audit import audit_table

NOT_AUDITED = frozenset({"refresh_tokens"})
IGNORED_COLUMNS = ("password_hash", "updated_at", "version")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The tables whose rows carry ``case_id`` (the case's entries are theirs, and the case's).
CASE_ROWS = (
    Subject,
    Transaction,
    AdjudicationItem,
    ImportRecord,
    Report,
    Note,
    Evidence,
    CustodyEvent,
)


def audit_trail() -> Audit:
    """The trail over casebook's tables (see the module doc)."""
    derived = {r.name for r in AGGREGATES} | NOT_AUDITED
    tables = [t for name, t in Base.metadata.tables.items() if name not in derived]
    return Audit(tables, chain_column="organization_id", ignore=IGNORED_COLUMNS)


class ActingUser:
    """Pure ASGI middleware: a request that may write (not GET/HEAD/OPTIONS) runs as
    ``user:{id}`` of its valid bearer token, for the audit trail."""

    def __init__(self, app: ASGIApp, user: Callable[[Scope], Hashable | None]) -> None:
        self.app = app
        self.user = user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        user = self.user(scope)
        with acting_as(None if user is None else f"user:{user}"):
            await self.app(scope, receive, send)


# -- reading the trail -------------------------------------------------------------------------

a = audit_table.c


def _keys_of(model: Any, case_id: int) -> Select[Any]:
    return select(cast(model.id, String)).where(model.case_id == case_id)


def _recorded_in_case(c: Any, case_id: int) -> ColumnElement[bool]:
    """Entries (columns ``c``) whose recorded values place them in the case: an insert's or
    a delete's ``case_id``, a statement whose WHERE named it (orjson's compact, sorted
    form)."""
    return or_(
        c.changes.contains(f'"case_id":[null,{case_id}]'),
        c.changes.contains(f'"case_id":[{case_id},null]'),
        c.changes.contains(f'"case_id":[{case_id}]'),
    )


def _of_case(c: Any, organization_id: int, case_id: int) -> ColumnElement[bool]:
    """Entries (columns ``c``) of a row of the case, or that recorded it."""
    chain = c.chain == str(organization_id)
    once = audit_table.alias("once")
    once_in_case = select(once.c.table_name, once.c.row_key).where(
        once.c.chain == str(organization_id),
        _recorded_in_case(once.c, case_id),
        once.c.row_key.is_not(None),
    )
    return and_(
        chain,
        or_(
            and_(c.table_name == "cases", c.row_key == str(case_id)),
            *(
                # Rows a subject of the case holds (no case_id of their own).
                and_(
                    c.table_name == model.__tablename__,
                    c.row_key.in_(
                        select(cast(model.id, String))
                        .join(Subject, Subject.id == model.subject_id)
                        .where(Subject.case_id == case_id)
                    ),
                )
                for model in (Account, ConsentRecord)
            ),
            *(
                and_(c.table_name == model.__tablename__, c.row_key.in_(_keys_of(model, case_id)))
                for model in CASE_ROWS
            ),
            _recorded_in_case(c, case_id),
            tuple_(c.table_name, c.row_key).in_(once_in_case),
        ),
    )


def case_entries(organization_id: int, case_id: int) -> Select[Any]:
    """Entries touching the case, newest first (see the module doc), and the summaries
    (statements, bulk inserts: no row key) written in the same transaction as one of them —
    an import's ``{"rows": N}`` beside its record's update. An entry's ``at`` is its
    transaction's commit time, shared by all its entries."""
    same = audit_table.alias("same")
    summaries = and_(
        a.chain == str(organization_id),
        a.row_key.is_(None),
        a.at.in_(select(same.c.at).where(_of_case(same.c, organization_id, case_id))),
    )
    return (
        select(audit_table)
        .where(or_(_of_case(a, organization_id, case_id), summaries))
        .order_by(a.id.desc())
    )


def user_entries(organization_id: int, user_id: int) -> Select[Any]:
    """What the user wrote in the organization's chain, newest first."""
    return (
        select(audit_table)
        .where(a.chain == str(organization_id), a.actor == f"user:{user_id}")
        .order_by(a.id.desc())
    )


def entries_after(stmt: Select[Any], before_id: int | None) -> Select[Any]:
    """``stmt``'s entries older than ``before_id`` (a page's cursor)."""
    return stmt if before_id is None else stmt.where(a.id < before_id)


def entry_out(row: Any) -> dict[str, Any]:
    """The API's form of an entry (``responses.AuditEntryOut``)."""
    return {
        "id": row.id,
        "chain": row.chain,
        "seq": row.seq,
        "at": dt.datetime.fromisoformat(row.at),
        "actor": row.actor,
        "table": row.table_name,
        "row_key": row.row_key,
        "op": row.op,
        "changes": orjson.loads(row.changes),
        "hash": row.hash,
    }


CSV_HEADER = ["seq", "at", "actor", "table", "row_key", "op", "field", "before", "after", "hash"]


def csv_rows(entry: dict[str, Any]) -> list[list[Any]]:
    """One line per changed field (``[before, after]``); a statement's or a bulk insert's
    summary one line per key, its value as JSON under ``after``."""
    head = [
        entry["seq"],
        entry["at"].isoformat(),
        entry["actor"] or "",
        entry["table"],
        entry["row_key"] or "",
        entry["op"],
    ]
    lines = []
    for field, value in sorted(entry["changes"].items()):
        if isinstance(value, list) and len(value) == 2:
            before, after = (_cell(v) for v in value)
        else:
            before, after = "", _cell(value)
        lines.append([*head, field, before, after, entry["hash"]])
    return lines or [[*head, "", "", "", entry["hash"]]]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
