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
import csv
import enum
import functools
import io
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.db import Columns, Database
from lockstep.imports.dialect import Dialect, sniff
from lockstep.imports.schema import Binding, ImportSchema, Rejection
from lockstep.imports.spool import CountingReader, Spool

SAMPLE_BYTES = 1 << 16


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


WriteBatch = Callable[[AsyncSession, Columns], Awaitable[None]]
BeforeCommit = Callable[[AsyncSession, ImportOutcome], Awaitable[None]]
OnProgress = Callable[[ImportProgress], None]


class _Rejected(Exception):
    """Rolls the import's transaction back (all-or-nothing with rejected rows)."""


Records = Generator[tuple[int, list[str]], None, None]


def open_records(spool: Spool) -> tuple[Dialect, Records, CountingReader]:
    """The file's dialect and its records as (line number, cells), header first."""
    with spool.open_binary() as raw:
        head = raw.read(SAMPLE_BYTES)
    sample = head.decode(spool.encoding, errors="replace")
    dialect = sniff(sample.lstrip("\ufeff"))
    counter = CountingReader(spool.open_binary())
    buffered = io.BufferedReader(counter, buffer_size=SAMPLE_BYTES)
    text = io.TextIOWrapper(buffered, encoding=spool.encoding, newline="")
    reader = csv.reader(text, **dialect.reader_options())  # type: ignore[arg-type]

    def records() -> Records:
        try:
            line = 1
            for cells in reader:
                yield line, cells
                line = reader.line_num + 1
        finally:
            text.close()

    return dialect, records(), counter


CHUNK = 256
"""Records converted at a time. A batch of thousands is assembled from chunks: a chunk's
record lists die young, where a whole batch of them lived long enough for the garbage
collector's full collections to trace them (a tenth of an import's time, measured)."""


def _next_batch(
    records: Iterator[tuple[int, list[str]]],
    binding: Binding,
    size: int,
    outcome: ImportOutcome,
    max_rejects: int,
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
            _convert(binding, lines, cells, batch, outcome, max_rejects)
            taken += len(cells)
            lines, cells = [], []
            if taken == size:
                return batch, True
    _convert(binding, lines, cells, batch, outcome, max_rejects)
    return batch, False


def _convert(
    binding: Binding,
    lines: list[int],
    cells: list[list[str]],
    into: Columns,
    outcome: ImportOutcome,
    max_rejects: int,
) -> None:
    if not cells:
        return
    rows, refused = binding.convert_batch(lines, cells)
    into.extend(rows)
    outcome.rows_read += len(cells)
    outcome.rows_rejected += len(refused)
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
) -> ImportOutcome:
    """Read ``spool`` with ``schema`` and write its rows in one transaction (see module doc).

    Raises ValidationFailedError when the file is not CSV or lacks required columns (nothing
    is written). ``before_commit(session, outcome)`` runs in the import's transaction just
    before it commits (record the import there, atomically with its rows).
    """
    dialect, records, counter = open_records(spool)
    try:
        header = next((cells for _, cells in records if any(c.strip() for c in cells)), None)
        if header is None:
            header = []
        binding = schema.bind(header)
        outcome = ImportOutcome(spool.encoding, dialect.delimiter, binding.ignored)

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

        parse = functools.partial(_next_batch, records, binding, batch_size, outcome, max_rejects)
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
                        doomed = policy is ImportPolicy.ALL_OR_NOTHING and outcome.rows_rejected > 0
                        if len(rows) and not doomed:
                            writing = asyncio.ensure_future(write_batch(session, rows))
                            in_flight = len(rows)
                            if not overlap:
                                await settle()
                        else:
                            report()
                        await asyncio.sleep(0)  # start the write; let other tasks run
                    await settle()
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
        records.close()
