"""The audit trail: every write to the audited tables, recorded in its own transaction.

    audit = Audit([Case.__table__, Subject.__table__], chain_column="organization_id",
                  actor=current_user_id)
    audit.install(database)                 # every writer() from now on is audited
    reports = await audit.verify(database)  # [ChainReport(chain, entries, break_)]

An observer of lockstep's write path (:mod:`lockstep.db.writes`), so it sees every way a
write can happen — ORM objects, Core statements, ``text()`` DML, bulk inserts, legacy bulk
methods, cascades — exactly as the change feed and the rollups do. What it guarantees:

* **Atomic with the write.** The entries are inserted in the writing transaction (``DERIVE``
  commit phase): an entry exists if and only if its write committed; a rolled-back
  savepoint's writes leave no entry.
* **Before and after.** A row written by key is recorded with the values it had before
  (read in the transaction, under a row lock on PostgreSQL) and after, for the columns that
  changed: an insert's values, an update's changed fields, a delete's last values.
  ``ignore`` leaves columns out (timestamps, version counters). A statement that writes rows
  it does not name (``UPDATE ... WHERE``, ``text()`` DML, a database cascade) is one entry
  holding the statement. An insert of more than ``bulk_rows`` rows (an import) is one entry
  with its row count.
* **Who.** ``actor()`` is called at the write (the request's user, a job's name); without
  one, :func:`acting_as` sets it for a block.
* **Tamper-evident.** Entries form hash chains, one per value of ``chain_column`` (a tenant:
  writers of different tenants never wait for each other), else one chain. A writer locks
  its chains' head rows (in one order, so writers cannot deadlock) from its commit phase to
  its COMMIT, so positions have no gaps and no forks. :meth:`Audit.verify` recomputes every
  chain and reports the first entry altered, removed or reordered (the CLI: ``lockstep
  audit verify``); cutting a chain's tail off cannot be seen from the chain alone — keep its
  head hash elsewhere.

Statements run on a raw connection bypass the session and are not audited (nor captured by
the feed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement

from lockstep.audit.chain import GENESIS, Break, ChainCheck, Entry, json_value
from lockstep.audit.revisions import audit_table, heads_table
from lockstep.changes import record_changes
from lockstep.db import MISSING, Columns, Database, Phase, RowWrite, Write
from lockstep.exceptions import ConfigurationError
from lockstep.types import Change, canonical

GLOBAL_CHAIN = "*"
"""The chain of entries whose row has no ``chain_column`` value (or of an unchained trail)."""

_acting: ContextVar[str | None] = ContextVar("lockstep_audit_actor", default=None)


@contextlib.contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    """Within this block, writes are audited as made by ``actor`` (a job, a CLI command)."""
    token = _acting.set(actor)
    try:
        yield
    finally:
        _acting.reset(token)


@dataclass(frozen=True, slots=True)
class _Pending:
    """An entry to append at commit (its chain position and hashes are assigned then)."""

    chain: str
    actor: str | None
    table: str
    key: str | None
    op: str
    changes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChainReport:
    """One chain checked by :meth:`Audit.verify`: how many entries, and where it breaks."""

    chain: str
    entries: int
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


class Audit:
    """Audits every write to ``tables`` through a database's sessions (see the module doc).

    ``chain_column``: a column the audited tables share whose value picks the entry's chain
    (a tenant id); ``actor``: called at each write for who made it (default: the value set
    by :func:`acting_as`); ``ignore``: column names never recorded; ``bulk_rows``: an insert
    of more rows than this is one summary entry.
    """

    phase = Phase.DERIVE

    def __init__(
        self,
        tables: Iterable[Table],
        *,
        chain_column: str | None = None,
        actor: Callable[[], str | None] | None = None,
        ignore: Iterable[str] = (),
        bulk_rows: int = 100,
    ) -> None:
        self.tables = {str(t.name): t for t in tables}
        if not self.tables:
            raise ConfigurationError("Audit needs at least one table to audit")
        self.chain_column = chain_column
        self.actor = actor or _acting.get
        self.ignore = frozenset(ignore)
        self.bulk_rows = bulk_rows
        self._columns = {
            name: tuple(str(c.name) for c in table.c if c.name not in self.ignore)
            for name, table in self.tables.items()
        }

    def install(self, database: Database) -> None:
        database.observe(self)

    # -- the observer ------------------------------------------------------------------------

    def watched(self, table: str) -> Sequence[str] | None:
        return self._columns.get(table)

    def observe(self, session: Session, write: Write) -> list[_Pending]:
        table = self.tables.get(write.table)
        if table is None or (write.sa_table is not None and write.sa_table is not table):
            return []
        actor = self.actor()
        if not isinstance(write, RowWrite):
            statement = write.sql if write.sql is not None else _sql(write.where)
            summary = {"statement": statement, "known": _known(write.known)}
            chain = self._chain_of(write.known)
            return [_Pending(chain, actor, write.table, None, write.op, summary)]
        if write.op == "insert" and (
            isinstance(write.after, Columns) or len(write.after) > self.bulk_rows
        ):
            chains = self._chains_of_rows(write.after)
            return [
                _Pending(chain, actor, write.table, None, "insert", {"rows": count})
                for chain, count in chains.items()
            ]
        pk = [str(c.name) for c in table.primary_key.columns]
        columns = self._columns[write.table]
        out = []
        after_rows = list(write.after) if not isinstance(write.after, Columns) else []
        befores: list[Mapping[str, Any] | None] = list(write.before) or [None] * len(after_rows)
        afters: list[Mapping[str, Any] | None] = list(after_rows) or [None] * len(befores)
        for before, after in zip(befores, afters, strict=True):
            named = before if before is not None else after
            assert named is not None
            changes: dict[str, Any] = {}
            for column in columns:
                old = _value(before, column)
                new = _value(after, column)
                if before is not None and after is not None and old == new:
                    continue
                changes[column] = [old, new]
            if write.op == "update" and not changes:
                continue  # an update that changed nothing recorded (ignored columns only)
            key = _key(named, pk)
            out.append(_Pending(self._chain(named), actor, write.table, key, write.op, changes))
        return out

    def commit(self, session: Session, items: list[_Pending]) -> None:
        if not items:
            return
        connection = session.connection()
        at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        by_chain: dict[str, list[_Pending]] = {}
        for item in items:
            by_chain.setdefault(item.chain, []).append(item)
        rows = []
        for chain in sorted(by_chain):  # one lock order: writers of several chains never deadlock
            seq, previous = _lock_head(connection, chain)
            for item in by_chain[chain]:
                seq += 1
                entry = Entry(
                    chain, seq, at, item.actor, item.table, item.key, item.op,
                    item.changes, previous,
                )  # fmt: skip
                previous = entry.digest()
                rows.append(_row(entry, previous))
            connection.execute(
                update(heads_table)
                .where(heads_table.c.chain == chain)
                .values(seq=seq, hash=previous)
            )
        connection.execute(insert(audit_table), rows)
        record_changes(
            session,
            [
                Change(
                    table=str(audit_table.name),
                    op="insert",
                    scopes={"chain": frozenset(by_chain)},
                )
            ],
        )

    def committed(self, session: Session) -> None:
        pass

    def rolled_back(self, session: Session) -> None:
        pass

    # -- checking --------------------------------------------------------------------------

    async def verify(
        self, database: Database, chains: Iterable[str] | None = None, *, page: int = 5_000
    ) -> list[ChainReport]:
        """Recompute every chain (or ``chains``) from its first entry; see :func:`first_break`."""
        return await verify_chains(database, chains, page=page)

    # -- chains -----------------------------------------------------------------------------

    def _chain(self, image: Mapping[str, Any]) -> str:
        if self.chain_column is None:
            return GLOBAL_CHAIN
        value = image.get(self.chain_column, MISSING)
        if value is MISSING or value is None or isinstance(value, ClauseElement):
            return GLOBAL_CHAIN
        return canonical(value)

    def _chain_of(self, known: Mapping[str, frozenset[Any]]) -> str:
        values = known.get(self.chain_column or "", frozenset())
        return canonical(next(iter(values))) if len(values) == 1 else GLOBAL_CHAIN

    def _chains_of_rows(self, rows: Columns | Sequence[Mapping[str, Any]]) -> dict[str, int]:
        column = self.chain_column
        if column is None:
            return {GLOBAL_CHAIN: len(rows)}
        values = rows[column] if isinstance(rows, Columns) and column in rows else None
        if values is None:
            values = [r.get(column) for r in rows] if not isinstance(rows, Columns) else []
        counts: dict[str, int] = {}
        for value in values:
            chain = GLOBAL_CHAIN if value is None else canonical(value)
            counts[chain] = counts.get(chain, 0) + 1
        return counts or {GLOBAL_CHAIN: len(rows)}


async def verify_chains(
    database: Database, chains: Iterable[str] | None = None, *, page: int = 5_000
) -> list[ChainReport]:
    """Check the audit chains stored in ``database`` (all, or ``chains``), a page of entries
    at a time, without holding a transaction open."""
    async with database.reader() as session:
        names = (
            list(chains)
            if chains is not None
            else list(
                await session.scalars(select(heads_table.c.chain).order_by(heads_table.c.chain))
            )
        )
    reports = []
    for chain in names:
        check = ChainCheck()
        count = 0
        last: Entry | None = None
        while check.broken is None:
            async with database.reader() as session:
                found = (
                    await session.execute(
                        select(audit_table)
                        .where(audit_table.c.chain == chain, audit_table.c.seq > count)
                        .order_by(audit_table.c.seq)
                        .limit(page)
                    )
                ).all()
            if not found:
                break
            for row in found:
                last = _entry(row._mapping)
                if check.add(last) is not None:
                    break
                count += 1
        broken = check.broken or await _check_head(database, chain, last)
        reports.append(ChainReport(chain, count, broken))
    return reports


async def _check_head(database: Database, chain: str, last: Entry | None) -> Break | None:
    """The head row must name the chain's last entry: entries removed from the end while the
    head was left alone show here."""
    async with database.reader() as session:
        head = (
            await session.execute(select(heads_table).where(heads_table.c.chain == chain))
        ).first()
    if head is None:
        return None if last is None else Break(last.seq, "the chain has no head row")
    tail = (last.seq, last.hash) if last is not None else (0, GENESIS)
    if tail != (int(head.seq), str(head.hash)):
        return Break(int(head.seq), "the chain's head names an entry that is not its last")
    return None


def _lock_head(connection: Connection, chain: str) -> tuple[int, str]:
    """The chain's last position and hash, its head row locked until COMMIT (created at
    position 0 when the chain is new): one upsert that takes the row lock and returns it."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(heads_table).values(chain=chain, seq=0, hash=GENESIS)
    stmt = stmt.on_conflict_do_update(
        index_elements=[heads_table.c.chain], set_={"seq": heads_table.c.seq}
    ).returning(heads_table.c.seq, heads_table.c.hash)
    seq, digest = connection.execute(stmt).one()
    return int(seq), str(digest)


def _row(entry: Entry, digest: str) -> dict[str, Any]:
    return {
        "chain": entry.chain,
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "table_name": entry.table,
        "row_key": entry.key,
        "op": entry.op,
        "changes": orjson.dumps(entry.changes, option=orjson.OPT_SORT_KEYS).decode(),
        "previous": entry.previous,
        "hash": digest,
    }


def _entry(row: Any) -> Entry:
    return Entry(
        row["chain"], int(row["seq"]), row["at"], row["actor"], row["table_name"],
        row["row_key"], row["op"], orjson.loads(row["changes"]), row["previous"], row["hash"],
    )  # fmt: skip


def _value(image: Mapping[str, Any] | None, column: str) -> Any:
    if image is None:
        return None
    value = image.get(column, MISSING)
    if value is MISSING:
        return None
    if isinstance(value, ClauseElement):
        return "<computed by the database>"
    return json_value(value)


def _key(image: Mapping[str, Any], pk: Sequence[str]) -> str | None:
    values = [image.get(c, MISSING) for c in pk]
    if any(v is MISSING or v is None or isinstance(v, ClauseElement) for v in values):
        return None
    return "/".join(canonical(v) for v in values)


def _known(known: Mapping[str, frozenset[Any]]) -> dict[str, list[Any]]:
    return {column: sorted(json_value(v) for v in values) for column, values in known.items()}


def _sql(where: Any) -> str | None:
    if where is None:
        return None
    try:
        return str(where.compile(compile_kwargs={"literal_binds": True}))
    except Exception:  # a value that cannot be rendered inline: the parameterized text
        return str(where)
