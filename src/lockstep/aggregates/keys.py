"""Group keys of a rollup: a source column as is, or the month / year of a date column.

A key is computed twice, and both must agree exactly: in Python from a written row's values
(to maintain the rollup incrementally) and in SQL on SQLite and PostgreSQL (to verify and
recompute it with a GROUP BY). Each key also gives the SQL predicate that selects the source
rows of one key value, written so an index on the source column serves it (a month is a
date range, not ``to_char(posted_on) = '2026-01'``).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Protocol

from sqlalchemy import Date, Integer, String, and_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

from lockstep.exceptions import ConfigurationError


class Key(Protocol):
    """One group-key column of a rollup table, derived from one source column."""

    name: str
    """The rollup table's column."""
    source: str
    """The source table's column it is computed from."""

    def column_type(self, source_type: TypeEngine[Any]) -> TypeEngine[Any]: ...

    def python(self, value: Any) -> Any:
        """The key value of a source value (never None: key columns are NOT NULL)."""

    def sql(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """The same computation in SQL, over the source column."""

    def match(self, column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
        """A predicate on the source column selecting exactly the rows with key ``value``."""

    def check(self, source_type: TypeEngine[Any]) -> None:
        """Raise ConfigurationError when the key cannot be computed from this column type."""


def plain(value: Any) -> Any:
    """Enum members as their values, so ``Direction.DEBIT`` and ``"debit"`` are one group."""
    return value.value if isinstance(value, enum.Enum) else value


class ColumnKey:
    """The source column's value itself."""

    def __init__(self, source: str, name: str | None = None) -> None:
        self.source = source
        self.name = name or source

    def column_type(self, source_type: TypeEngine[Any]) -> TypeEngine[Any]:
        return source_type

    python = staticmethod(plain)

    def sql(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return column

    def match(self, column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
        condition: ColumnElement[bool] = column == value
        return condition

    def check(self, source_type: TypeEngine[Any]) -> None:
        return None

    def __repr__(self) -> str:
        return f"column({self.source!r})"


class _DateKey:
    """Shared by month and year: keys over a ``Date`` column."""

    source: str
    name: str

    def check(self, source_type: TypeEngine[Any]) -> None:
        if not isinstance(source_type, Date):
            raise ConfigurationError(
                f"{self!r} needs a Date column, {self.source!r} is {source_type!r}; "
                "derive keys from date columns (timestamps would depend on the time zone)"
            )

    @staticmethod
    def _date(value: Any) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            return dt.date.fromisoformat(value[:10])
        raise TypeError(f"not a date: {value!r}")


class MonthKey(_DateKey):
    """``'YYYY-MM'`` of a date column."""

    def __init__(self, source: str, name: str = "month") -> None:
        self.source = source
        self.name = name

    def column_type(self, source_type: TypeEngine[Any]) -> TypeEngine[Any]:
        return String(7)

    def python(self, value: Any) -> str:
        day = self._date(value)
        return f"{day.year:04d}-{day.month:02d}"

    def sql(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return _month_of(column)

    def match(self, column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
        first = dt.date(int(value[:4]), int(value[5:7]), 1)
        following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return and_(column >= first, column < following)

    def __repr__(self) -> str:
        return f"month({self.source!r})"


class YearKey(_DateKey):
    """The year (an integer) of a date column."""

    def __init__(self, source: str, name: str = "year") -> None:
        self.source = source
        self.name = name

    def column_type(self, source_type: TypeEngine[Any]) -> TypeEngine[Any]:
        return Integer()

    def python(self, value: Any) -> int:
        return self._date(value).year

    def sql(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return _year_of(column)

    def match(self, column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
        year = int(value)
        return and_(column >= dt.date(year, 1, 1), column < dt.date(year + 1, 1, 1))

    def __repr__(self) -> str:
        return f"year({self.source!r})"


def month(source: str, *, name: str = "month") -> MonthKey:
    """Group by the calendar month of the Date column ``source``, stored as ``'YYYY-MM'``."""
    return MonthKey(source, name)


def year(source: str, *, name: str = "year") -> YearKey:
    """Group by the year of the Date column ``source``, stored as an integer."""
    return YearKey(source, name)


def as_key(spec: str | Key) -> Key:
    return ColumnKey(spec) if isinstance(spec, str) else spec


# -- the SQL side, one spelling per backend ----------------------------------------------------


class _month_of(FunctionElement[str]):
    type = String()
    name = "lockstep_month"
    inherit_cache = True


class _year_of(FunctionElement[int]):
    type = Integer()
    name = "lockstep_year"
    inherit_cache = True


@compiles(_month_of, "sqlite")
def _month_sqlite(element: _month_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)})"


@compiles(_month_of, "postgresql")
def _month_postgres(element: _month_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)}, 'YYYY-MM')"


@compiles(_year_of, "sqlite")
def _year_sqlite(element: _year_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(strftime('%Y', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(_year_of, "postgresql")
def _year_postgres(element: _year_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(EXTRACT(YEAR FROM {compiler.process(element.clauses, **kw)}) AS INTEGER)"
