"""Importing a spooled CSV file through the database's writer, all or nothing.

Guarantees:

* One write transaction for the whole file: its rows are committed together or not at all,
  so there is never a half-imported file (a crash, an error or a rejected row under the
  default policy rolls everything back). Rows go through ``write_batch`` on the writer's
  session, so the change feed and the rollups see them like any other write.
* ``all_or_nothing`` (default): any rejected row means nothing is stored; the file is still
  read to the end so the rejects report is complete. ``skip_invalid``: valid rows are stored,
  rejected ones reported.
* Memory stays bounded whatever the file size: records are read from disk in batches of
  ``batch_size`` (on PostgreSQL the next batch is parsed while the previous one is
  written); at most ``max_rejects`` rejects are kept (all are counted).
* ``on_progress`` is called after every batch (and once at the end) with bytes and rows done.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.db import Columns, Database
from lockstep.imports.schema import Binding, ImportSchema, Rejection
from lockstep.imports.source import open_source
from lockstep.imports.spool import Spool

TRAILER_MAX = 20


class ImportPolicy(enum.StrEnum):
    ALL_OR_NOTHING = "all_or_nothing"
    SKIP_INVALID = "skip_invalid"


@dataclass(frozen=True, slots=True)
class ImportProgress:
    bytes_read: int
    bytes_total: int
    rows_read: int
    rows_written: int
    rows_rejected: int
    done: bool = False


@dataclass(slots=True)
class ImportOutcome:
    """What an import did. ``committed``: its rows are stored (and ``rows_written`` of them)."""

    encoding: str
    delimiter: str
    ignored_columns: tuple[str, ...]
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    rejects: list[Rejection] = field(default_factory=list)
    rejects_truncated: bool = False
    committed: bool = False
    format: str = "csv"
    trailer: list[tuple[int, str]] = field(default_factory=list)
    """Records ending the file that are no rows (totals, closing balance): line, text."""
    account: str = ""
    currency: str | None = None
    # Rejected records that may yet be the trailer (nothing good has followed them).
    _tail: list[tuple[int, list[str]]] = field(default_factory=list, repr=False)

    @property
    def settled_rejects(self) -> int:
        """Rejected rows that cannot be part of the file's trailer any more."""
        return self.rows_rejected - len(self._tail)


WriteBatch = Callable[[AsyncSession, Columns], Awaitable[None]]
BeforeCommit = Callable[[AsyncSession, ImportOutcome], Awaitable[None]]
OnProgress = Callable[[ImportProgress], None]


class _Rejected(Exception):
    """Rolls the import's transaction back (all-or-nothing with rejected rows)."""


CHUNK = 256
"""Records converted at a time. A batch of thousands is assembled from chunks: a chunk's
record lists die young, where a whole batch of them lived long enough for the garbage
collector's full collections to trace them (a tenth of an import's time, measured)."""


Trailer = Callable[[Sequence[str]], bool]
"""Whether a record may be part of a file's trailer (say: it has no date)."""


def _next_batch(
    records: Iterator[tuple[int, list[str]]],
    binding: Binding,
    size: int,
    outcome: ImportOutcome,
    max_rejects: int,
    trailer: Trailer | None = None,
) -> tuple[Columns, bool]:
    """The converted rows of the next ``size`` records; False once the file is exhausted."""
    batch = Columns({name: [] for name in binding.names})
    lines: list[int] = []
    cells: list[list[str]] = []
    taken = 0
    for line, record in records:
        if not any(record):
            continue  # blank line, or a row of empty cells
        lines.append(line)
        cells.append(record)
        if len(cells) == min(CHUNK, size - taken):
            _convert(binding, lines, cells, batch, outcome, max_rejects, trailer)
            taken += len(cells)
            lines, cells = [], []
            if taken == size:
                return batch, True
    _convert(binding, lines, cells, batch, outcome, max_rejects, trailer)
    return batch, False


def _convert(
    binding: Binding,
    lines: list[int],
    cells: list[list[str]],
    into: Columns,
    outcome: ImportOutcome,
    max_rejects: int,
    trailer: Trailer | None = None,
) -> None:
    if not cells:
        return
    rows, refused = binding.convert_batch(lines, cells)
    into.extend(rows)
    outcome.rows_read += len(cells)
    outcome.rows_rejected += len(refused)
    if trailer is not None:
        # The run of refused trailer-like records that ends this chunk may be the file's
        # trailer: it is, if nothing but more of them follows until the end of the file.
        refused_lines = {rejects[0].row for rejects in refused}
        run: list[tuple[int, list[str]]] = []
        for line, record in zip(reversed(lines), reversed(cells), strict=True):
            if line not in refused_lines or not trailer(record):
                break
            run.append((line, record))
        run.reverse()
        if len(run) == len(cells):
            outcome._tail.extend(run)
        else:
            outcome._tail[:] = run
    for rejects in refused:
        room = max_rejects - len(outcome.rejects)
        if room > 0:
            outcome.rejects.extend(rejects[:room])
        if room < len(rejects):
            outcome.rejects_truncated = True


async def ingest(
    database: Database,
    spool: Spool,
    schema: ImportSchema,
    write_batch: WriteBatch,
    *,
    policy: ImportPolicy = ImportPolicy.ALL_OR_NOTHING,
    batch_size: int = 5_000,
    max_rejects: int = 10_000,
    before_commit: BeforeCommit | None = None,
    on_progress: OnProgress | None = None,
    header_row: int | None = None,
    labels: Sequence[str] | None = None,
    trailer: Trailer | None = None,
) -> ImportOutcome:
    """Read ``spool`` with ``schema`` and write its rows in one transaction (see module doc).

    The header is the first non-blank record, unless ``header_row`` says which record it
    is (those before it, a statement's preamble, are skipped; -1: the file has none, and
    ``labels`` name its columns). With ``trailer``, refused records that end the file and
    satisfy it (totals, closing balances) are not rows: they are left out of the counts and
    listed in ``outcome.trailer`` (at most 20). A statement format (OFX, camt.053, MT940,
    QIF) is read as records of :data:`~lockstep.imports.source.CANONICAL`.

    Raises ValidationFailedError when the file is not CSV or lacks required columns (nothing
    is written). ``before_commit(session, outcome)`` runs in the import's transaction just
    before it commits (record the import there, atomically with its rows).
    """
    source = open_source(spool)
    records, counter = source.records, source.counter
    try:
        if header_row is None:
            header = next((cells for _, cells in records if any(c.strip() for c in cells)), [])
        elif header_row < 0:
            header = list(labels or ())
        else:
            header = next((cells for i, (_, cells) in enumerate(records) if i == header_row), [])
        if labels is not None and header_row is not None:
            header = list(labels)  # the mapping's names for the file's columns
        binding = schema.bind(header)
        outcome = ImportOutcome(spool.encoding, source.delimiter, binding.ignored)
        outcome.format, outcome.account, outcome.currency = (
            source.format,
            source.account,
            source.currency,
        )

        def report(done: bool = False) -> None:
            if on_progress is not None:
                on_progress(
                    ImportProgress(
                        bytes_read=min(counter.position, spool.size),
                        bytes_total=spool.size,
                        rows_read=outcome.rows_read,
                        rows_written=outcome.rows_written,
                        rows_rejected=outcome.rows_rejected,
                        done=done,
                    )
                )

        parse = functools.partial(
            _next_batch, records, binding, batch_size, outcome, max_rejects, trailer
        )
        # PostgreSQL: batch N+1 is parsed in a thread while asyncpg writes batch N from this
        # loop. SQLite: one after the other; sqlite3 retakes the GIL for every row it
        # writes, so parsing beside its thread slowed both (an import 1.15-1.25x slower).
        overlap = not database.is_sqlite

        try:
            async with database.writer() as session:
                writing: asyncio.Task[None] | None = None  # one write at a time, in file order
                in_flight = 0

                async def settle() -> None:
                    nonlocal writing
                    if writing is not None:
                        await writing
                        writing = None
                        outcome.rows_written += in_flight
                        report()

                try:
                    more = True
                    while more:
                        if overlap:
                            rows, more = await asyncio.to_thread(parse)
                        else:
                            rows, more = parse()
                        await settle()
                        doomed = (
                            policy is ImportPolicy.ALL_OR_NOTHING and outcome.settled_rejects > 0
                        )
                        if len(rows) and not doomed:
                            writing = asyncio.ensure_future(write_batch(session, rows))
                            in_flight = len(rows)
                            if not overlap:
                                await settle()
                        else:
                            report()
                        await asyncio.sleep(0)  # start the write; let other tasks run
                    await settle()
                    _set_trailer(outcome, source.delimiter)
                finally:
                    if writing is not None:  # stopped by an error: never leave a write behind
                        writing.cancel()
                        with contextlib.suppress(BaseException):
                            await writing
                if policy is ImportPolicy.ALL_OR_NOTHING and outcome.rows_rejected:
                    raise _Rejected
                outcome.committed = True
                if before_commit is not None:
                    await before_commit(session, outcome)
        except _Rejected:
            outcome.rows_written = 0
        except BaseException:
            outcome.committed = False
            raise
        report(done=True)
        return outcome
    finally:
        source.close()


def _set_trailer(outcome: ImportOutcome, delimiter: str) -> None:
    """The refused records that ended the file are its trailer, if there are few."""
    tail, outcome._tail = outcome._tail, []
    if not tail or len(tail) > TRAILER_MAX:
        return
    lines = {line for line, _ in tail}
    outcome.trailer = [(line, (delimiter or ",").join(cells).strip()) for line, cells in tail]
    outcome.rows_read -= len(tail)
    outcome.rows_rejected -= len(tail)
    outcome.rejects = [x for x in outcome.rejects if x.row not in lines]
