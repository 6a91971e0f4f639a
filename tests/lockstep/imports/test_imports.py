"""CSV ingestion: encodings, delimiters, header mapping, validation, policies, progress."""

from __future__ import annotations

import codecs
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.db import Columns, Database, bulk_insert
from lockstep.exceptions import PayloadTooLargeError, ValidationFailedError
from lockstep.imports import (
    ImportField,
    ImportPolicy,
    ImportProgress,
    ImportSchema,
    Spool,
    SpoolWriter,
    ingest,
    parsers,
    sniff,
)

metadata = MetaData()
lines = Table(
    "lines",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("day", Date, nullable=False),
    Column("cents", Integer, nullable=False),
    Column("label", String(20), nullable=False),
)
SCHEMA = ImportSchema(
    [
        ImportField("day", parsers.date(), aliases=("date", "booking date")),
        ImportField("cents", parsers.cents(), aliases=("amount",)),
        ImportField("label", parsers.text(20), required=False, default="-"),
    ]
)


def spool_of(tmp_path: Path, content: bytes, name: str = "f.csv") -> Spool:
    path = tmp_path / name
    path.write_bytes(content)
    return Spool.of_path(path)


async def write(session: AsyncSession, rows: Columns) -> None:
    await bulk_insert(session, lines, rows)


async def count(database: Database) -> int:
    async with database.reader() as s:
        return int(await s.scalar(select(func.count()).select_from(lines)) or 0)


@pytest.fixture
async def db(database: Database) -> Database:
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return database


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (b"Date,Amount\n2026-01-02,1.50\n", "utf-8"),
        (codecs.BOM_UTF8 + b"Date,Amount\n", "utf-8-sig"),
        ("Date,Amount,Label\n2026-01-02,1,Café\n".encode("utf-16"), "utf-16"),
        ("Date,Amount,Label\n2026-01-02,1,Café €\n".encode("cp1252"), "cp1252"),
        (b"Date,Amount,Label\n2026-01-02,1,\x81\xe9\n", "latin-1"),
    ],
)
def test_encoding_is_detected(tmp_path: Path, raw: bytes, encoding: str) -> None:
    assert spool_of(tmp_path, raw).encoding == encoding


def test_utf8_split_across_chunks_is_still_utf8() -> None:
    writer = SpoolWriter(copy=False)
    data = "Label\nCafé\n".encode()
    cut = data.index(b"\xc3") + 1  # inside the two-byte é
    writer.write(data[:cut])
    writer.write(data[cut:])
    assert writer.finish(path=Path("/dev/null")).encoding == "utf-8"


def test_size_limit_is_enforced_while_receiving(tmp_path: Path) -> None:
    writer = SpoolWriter(max_bytes=10, directory=tmp_path)
    writer.write(b"0123456789")
    with pytest.raises(PayloadTooLargeError):
        writer.write(b"x")
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        ("a,b,c\n1,2,3\n", ","),
        ('a;b;c\n"1,5";2,25;x\n', ";"),  # decimal commas in a semicolon file
        ("a\tb\n1\t2\n", "\t"),
        ("a|b\n1|2\n", "|"),
        ('name,amount\n"Smith; John",3\n', ","),
    ],
)
def test_delimiter_sniffing(sample: str, delimiter: str) -> None:
    assert sniff(sample).delimiter == delimiter


def test_not_csv_is_refused() -> None:
    with pytest.raises(ValidationFailedError, match="does not look like CSV"):
        sniff("just one column\nof text\n")


def test_header_mapping_reports_missing_columns() -> None:
    binding = SCHEMA.bind(["  Booking-Date ", "AMOUNT", "extra"])
    assert binding.ignored == ("extra",)
    with pytest.raises(ValidationFailedError, match=r"lacks required column\(s\): cents"):
        SCHEMA.bind(["date", "label"])


def test_rejects_name_row_column_and_reason() -> None:
    binding = SCHEMA.bind(["date", "amount"])
    assert binding.convert(2, ["2026-01-02", "3,5"]) == {
        "day": dt.date(2026, 1, 2),
        "cents": 350,
        "label": "-",
    }
    rejects = binding.convert(7, ["31.02.2026", "1.234.5"])
    assert isinstance(rejects, list)
    assert [(r.row, r.column, r.value) for r in rejects] == [
        (7, "date", "31.02.2026"),
        (7, "amount", "1.234.5"),
    ]
    assert "not a date" in rejects[0].reason


async def test_all_or_nothing_stores_nothing_and_reports_every_bad_row(
    db: Database, tmp_path: Path
) -> None:
    rows = ["date;amount"] + [f"2026-01-{1 + i % 28:02d};{i}" for i in range(12_000)]
    rows[5] = "2026-01-05;lots"
    rows[11_000] = "not a date;3"
    spool = spool_of(tmp_path, "\n".join(rows).encode())
    outcome = await ingest(db, spool, SCHEMA, write, batch_size=1000)
    assert not outcome.committed
    assert (outcome.rows_read, outcome.rows_rejected, outcome.rows_written) == (12_000, 2, 0)
    assert [(r.row, r.column) for r in outcome.rejects] == [(6, "amount"), (11_001, "date")]
    assert await count(db) == 0


async def test_skip_invalid_keeps_the_good_rows(db: Database, tmp_path: Path) -> None:
    spool = spool_of(tmp_path, b"date,amount,label\n2026-01-01,1,a\n,2,b\n2026-01-03,-3.25,c\n")
    outcome = await ingest(db, spool, SCHEMA, write, policy=ImportPolicy.SKIP_INVALID)
    assert outcome.committed
    assert (outcome.rows_written, outcome.rows_rejected) == (2, 1)
    assert outcome.rejects[0].reason == "is required"
    async with db.reader() as s:
        assert sorted((await s.scalars(select(lines.c.cents))).all()) == [-325, 100]


async def test_a_failure_mid_file_leaves_nothing_behind(db: Database, tmp_path: Path) -> None:
    spool = spool_of(tmp_path, ("date,amount\n" + "2026-01-01,1\n" * 30).encode())
    calls = 0

    async def fails_on_the_third_batch(session: AsyncSession, rows: Columns) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk full")
        await write(session, rows)

    with pytest.raises(RuntimeError, match="disk full"):
        await ingest(db, spool, SCHEMA, fails_on_the_third_batch, batch_size=5)
    assert await count(db) == 0


@pytest.mark.parametrize(
    ("rows", "batch_size", "written"),
    [
        (25, 10, [10, 20, 25, 25]),
        # Records are converted a few hundred at a time; a batch is still batch_size of them.
        (700, 300, [300, 600, 700, 700]),
    ],
)
async def test_progress_is_reported_per_batch(
    db: Database, tmp_path: Path, rows: int, batch_size: int, written: list[int]
) -> None:
    spool = spool_of(tmp_path, ("date,amount\n" + "2026-01-01,1\n" * rows).encode())
    seen: list[ImportProgress] = []
    outcome = await ingest(db, spool, SCHEMA, write, batch_size=batch_size, on_progress=seen.append)
    assert outcome.committed
    assert [p.rows_written for p in seen] == written
    assert seen[-1].done
    assert seen[-1].bytes_read == seen[-1].bytes_total == spool.size
    assert await count(db) == rows


def _zero_is_refused(batch: Columns) -> Iterator[tuple[int, str]]:
    labels = batch["label"]
    for i, cents in enumerate(batch["cents"]):
        labels[i] = labels[i].upper()
        if cents == 0:
            yield i, "amount: is zero"


CHECKED = ImportSchema(SCHEMA.fields, check=_zero_is_refused)
CELLS = {
    "date": ["2026-01-02", "02.01.2026", "2026-02-30", "", " "],
    "amount": ["1", "3,5", "-2.25", "1.234,56", "0", "x", ""],
    "label": ["a", "b", "", "a label longer than twenty"],
    "": ["", "extra"],  # past the header
}


@st.composite
def files(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = draw(st.sampled_from([["date", "amount", "label"], ["amount", "date"]]))

    def record(width: int) -> st.SearchStrategy[list[str]]:
        names = [*header, ""][:width]
        return st.tuples(*(st.sampled_from(CELLS[n]) for n in names)).map(list)

    widths = st.integers(len(header) - 1, len(header) + 1)
    return header, draw(st.lists(widths.flatmap(record), max_size=40))


@given(files())
@settings(max_examples=200, deadline=None)
def test_a_batch_converts_as_its_records_would_one_by_one(
    file: tuple[list[str], list[list[str]]],
) -> None:
    # A batch with one bad cell takes the careful path; a clean one the columnar fast path.
    # Either way each row comes out as it would alone: values, rejects, the check's work.
    header, records = file
    lines = list(range(2, 2 + len(records)))
    batch, refused = CHECKED.bind(header).convert_batch(lines, records)
    alone = CHECKED.bind(header)
    expected_rows: list[dict[str, Any]] = []
    expected_refused: list[list[Any]] = []
    for line, cells in zip(lines, records, strict=True):
        one, rejects = alone.convert_batch([line], [cells])
        expected_rows += one.rows()
        expected_refused += rejects
    assert list(batch.rows()) == expected_rows
    assert refused == expected_refused


def test_a_repeating_column_is_parsed_once_per_distinct_text() -> None:
    calls: list[str] = []

    def day(raw: str) -> dt.date:
        calls.append(raw)
        return dt.date.fromisoformat(raw)

    schema = ImportSchema([ImportField("day", day), ImportField("n", parsers.integer())])
    binding = schema.bind(["day", "n"])
    days = [f"2026-01-{1 + i % 3:02d}" for i in range(6000)]
    for start in range(0, 6000, 500):  # one file, many batches: the memo lasts the file
        chunk = [[d, str(i)] for i, d in enumerate(days[start : start + 500], start)]
        batch, refused = binding.convert_batch(list(range(len(chunk))), chunk)
        assert not refused
        assert batch["n"] == list(range(start, start + 500))
    assert sorted(calls) == ["2026-01-01", "2026-01-02", "2026-01-03"]
