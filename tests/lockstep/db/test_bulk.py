"""bulk_insert stores exactly what ``session.execute(insert(table), rows)`` stores (types,
defaults, NULLs) on both backends, and refuses rows it cannot complete before writing any."""

from __future__ import annotations

import datetime as dt
import enum
import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

from lockstep.db import Columns, Database, bulk_insert
from lockstep.exceptions import ConfigurationError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def stamp() -> dt.datetime:
    return dt.datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=dt.UTC)


def needs_context(context: Any) -> int:
    return 7


metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("label", String(40), nullable=False),
    Column("day", Date, nullable=True),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("flag", Boolean, nullable=False, default=False),
    Column("price", Numeric(12, 2), nullable=True),
    Column("big", BigInteger, nullable=True),
    Column("color", Enum(Color), nullable=True),
    Column("doc", JSON, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False, default=stamp),
    Column("server_made", String(10), nullable=False, server_default=text("'db'")),
)
strict = Table(
    "strict",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("required", String(10), nullable=False),
    Column("contextual", Integer, nullable=False, default=needs_context),
)

ROWS: list[dict[str, Any]] = [
    {
        "label": "plain",
        "day": dt.date(2026, 1, 31),
        "at": dt.datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        "flag": True,
        "price": Decimal("1.10"),
        "big": 2**62,
        "color": Color.RED,
        "doc": {"a": [1, 2]},
    },
    {
        "label": "équivalent",  # equal to the row above in every memoized column but one type
        "day": dt.date(2026, 1, 31),
        "at": None,
        "flag": False,
        "price": Decimal("1.1"),
        "big": -(2**62),
        "color": Color.BLUE,
        "doc": None,
    },
    {
        "label": "nulls",
        "day": None,
        "at": None,
        "flag": True,
        "price": None,
        "big": None,
        "color": None,
        "doc": [],
    },
]


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands timestamps back naive (they were stored in UTC)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


async def create(db: Database) -> None:
    async with db.writer_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def stored(db: Database) -> list[tuple[Any, ...]]:
    async with db.reader() as s:
        rows = (await s.execute(select(things).order_by(things.c.id))).all()
    return [tuple(row)[1:] for row in rows]  # without the id


async def test_same_values_as_a_core_executemany(database: Database) -> None:
    await create(database)
    async with database.writer() as s:
        await s.execute(insert(things), [dict(r) for r in ROWS])
    expected = await stored(database)
    async with database.writer() as s:
        await s.execute(things.delete())
        await bulk_insert(s, things, [dict(r) for r in ROWS])
    assert await stored(database) == expected
    assert [utc(r[-2]) for r in expected] == [stamp()] * 3  # the callable default, per row
    assert {r[-1] for r in expected} == {"db"}  # the server default
    assert [r[4] for r in expected] == [Decimal("1.10"), Decimal("1.10"), None]


async def test_a_columns_batch_stores_what_the_rows_store(database: Database) -> None:
    await create(database)
    async with database.writer() as s:
        await bulk_insert(s, things, [dict(r) for r in ROWS])
    expected = await stored(database)
    async with database.writer() as s:
        await s.execute(things.delete())
        await bulk_insert(s, things, Columns.of_rows([dict(r) for r in ROWS]))
    assert await stored(database) == expected


async def test_rows_given_every_column_round_trip(database: Database) -> None:
    await create(database)
    given = {"created": stamp(), "server_made": "row"}
    rows = [{**r, **given, "id": 10 + i} for i, r in enumerate(ROWS)]
    async with database.writer() as s:
        await bulk_insert(s, things, rows)
    async with database.reader() as s:
        ids = list((await s.scalars(select(things.c.id).order_by(things.c.id))).all())
    assert ids == [10, 11, 12]
    assert {r[-1] for r in await stored(database)} == {"row"}


@pytest.mark.parametrize(
    ("table", "rows", "message"),
    [
        (things, [{"label": "x", "nope": 1}], "no column(s) ['nope']"),
        (things, [{"label": "x", "big": 1}, {"label": "y"}], "a row lacks 'big'"),
        (strict, [{"contextual": 1}], "the rows lack 'required'"),
        (strict, [{"required": "x"}], "give 'contextual' in the rows"),
    ],
    ids=["unknown-column", "ragged-rows", "missing-required", "context-default"],
)
async def test_rows_it_cannot_complete_are_refused_and_nothing_is_written(
    database: Database, table: Table, rows: list[dict[str, Any]], message: str
) -> None:
    await create(database)
    async with database.writer() as s:
        await bulk_insert(s, things, [{"label": "kept"}])

    async def write() -> None:
        async with database.writer() as s:
            await bulk_insert(s, things, [{"label": "lost"}])
            await bulk_insert(s, table, rows)

    with pytest.raises(ConfigurationError, match=re.escape(message)):
        await write()
    async with database.reader() as s:
        labels = list((await s.scalars(select(things.c.label))).all())
    assert labels == ["kept"]


async def test_a_constraint_violation_rolls_the_transaction_back(database: Database) -> None:
    await create(database)

    async def write() -> None:
        async with database.writer() as s:
            await bulk_insert(s, things, [{"id": 1, "label": "a"}, {"id": 1, "label": "b"}])

    with pytest.raises(IntegrityError):
        await write()
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(things)) == 0


async def test_no_rows_is_nothing(database: Database) -> None:
    await create(database)
    async with database.writer() as s:
        await bulk_insert(s, things, [])
    assert await stored(database) == []


async def test_a_bulk_insert_that_opens_the_transaction_rolls_back_with_it(
    database: Database,
) -> None:
    # On asyncpg the rows go by COPY, which must run inside the session's transaction even
    # when nothing else has run in it yet.
    await create(database)

    async def write() -> None:
        async with database.writer() as s:
            await bulk_insert(s, things, [{"label": "lost"}] * 3)
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await write()
    assert await stored(database) == []
