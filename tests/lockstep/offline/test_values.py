"""A column formatted whole (a snapshot page) gives the same texts as value by value."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
)

from lockstep.offline.values import codec_for


class Colour(enum.Enum):
    RED = "red"


class Label(str):
    """A str subclass (an enum's value type, a custom type's result): not a plain str."""


columns = Table(
    "every_type",
    MetaData(),
    Column("i4", Integer),
    Column("i8", BigInteger),
    Column("i2", SmallInteger),
    Column("f", Float),
    Column("n", Numeric(10, 2)),
    Column("b", Boolean),
    Column("ts", DateTime(timezone=True)),
    Column("d", Date),
    Column("u", Uuid),
    Column("j", JSON),
    Column("bin", LargeBinary),
    Column("vc", String(20)),
    Column("t", Text),
).columns

VALUES: dict[str, list[Any]] = {
    "i4": [1, -7, 0, None, True, False, decimal.Decimal("3")],
    "i8": [2**40, None, -(2**40)],
    "i2": [3, None],
    "f": [1.5, None, 0.1, 2.0],
    "n": [decimal.Decimal("1.50"), None, decimal.Decimal("-0.01")],
    "b": [True, False, None],
    "ts": [dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), None],
    "d": [dt.date(2026, 1, 2), None],
    "u": [uuid.UUID(int=5), None],
    "j": [{"a": [1, 2]}, [1], None],
    "bin": [b"\x00\xff", None],
    "vc": ["x", "", None, Label("sub"), Colour.RED, 'say "hi"'],
    "t": ["long text", None, Label("sub"), Colour.RED, 5],
}


@pytest.mark.parametrize("name", list(VALUES))
def test_texts_of_a_column_are_the_texts_of_its_values(name: str) -> None:
    codec = codec_for(columns[name])
    values = VALUES[name]
    assert codec.texts(values) == [codec.text(v) for v in values]
    assert codec.texts(tuple(values)) == codec.texts(iter(values))
