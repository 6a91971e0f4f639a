"""Column values as the Electric shape protocol carries them: PostgreSQL type names and text.

Electric sends every value as PostgreSQL's text form (``col::text`` with ``DateStyle=ISO``
and ``TimeZone=UTC``) and names each column's type in the ``electric-schema`` header
(``int4``, ``int8``, ``bool``, ``date``, ``timestamptz``, ``text``, ...), which its client
uses to parse them. :class:`ColumnCodec` does the same from a SQLAlchemy column, on SQLite
as on PostgreSQL, so both backends send identical bytes for identical rows: a value is
formatted from the Python value SQLAlchemy reads, never from a backend's own text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Column, types


@dataclass(frozen=True, slots=True)
class ColumnCodec:
    """How one column travels: its PostgreSQL ``pg_type`` (and schema extras), its text
    form, and how text (a ``params[n]`` value, a logged image) becomes a Python value again.
    ``ordered`` columns may be filtered with ranges."""

    name: str
    pg_type: str
    to_python: Callable[[str], Any]
    ordered: bool
    extras: tuple[tuple[str, int], ...] = ()
    formatter: Callable[[Any], str] = field(default=lambda value: _format(value))
    plain: type | None = None
    """Values of exactly this type are their own text form through ``str`` (an ``int``,
    a ``str``): :meth:`texts` formats them without a call per value."""

    def text(self, value: Any) -> str | None:
        """``value`` (as SQLAlchemy returns it) in PostgreSQL's text form; None for NULL."""
        if value is None:
            return None
        return self.formatter(value)

    def texts(self, values: Iterable[Any]) -> list[str | None]:
        """:meth:`text` of each of ``values`` (a column of a snapshot page, formatted in one
        pass: the same strings, without a Python call per value of a plain type)."""
        fmt = self.formatter
        if self.plain is str:
            return [v if type(v) is str else (None if v is None else fmt(v)) for v in values]
        if self.plain is not None:
            plain = self.plain
            return [str(v) if type(v) is plain else (None if v is None else fmt(v)) for v in values]
        return [None if v is None else fmt(v) for v in values]

    def parse(self, text: str | None) -> Any:
        """The Python value of a text form (None stays None). Raises ValueError."""
        return None if text is None else self.to_python(text)

    def schema(self) -> dict[str, Any]:
        """This column's entry in the ``electric-schema`` header."""
        out: dict[str, Any] = {"type": self.pg_type, "dims": 0}
        out.update(self.extras)
        return out


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "t", "1", "yes", "on"):
        return True
    if lowered in ("false", "f", "0", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _int(text: str) -> int:
    number = decimal.Decimal(text.strip())
    if number != number.to_integral_value():
        raise ValueError(f"not an integer: {text!r}")
    return int(number)


def _datetime(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.strip().replace(" ", "T"))
    return value if value.tzinfo is None else value.astimezone(dt.UTC)


def _aware_datetime(text: str) -> dt.datetime:
    value = _datetime(text)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return _format(value.value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            text = value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
            return text + "+00"
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _int_text(value: Any) -> str:
    return str(value) if type(value) is int else _format(value)


def _plain_text(value: Any) -> str:
    return value if type(value) is str else _format(value)


def codec_for(column: Column[Any]) -> ColumnCodec:
    """The codec of a SQLAlchemy column, from its type (decorated types by their impl)."""
    kind = column.type
    if isinstance(kind, types.TypeDecorator):
        kind = kind.impl_instance
    name = str(column.name)
    if isinstance(kind, types.Boolean):
        return ColumnCodec(name, "bool", _bool, ordered=False)
    if isinstance(kind, types.BigInteger):
        return ColumnCodec(name, "int8", _int, ordered=True, formatter=_int_text, plain=int)
    if isinstance(kind, types.SmallInteger):
        return ColumnCodec(name, "int2", _int, ordered=True, formatter=_int_text, plain=int)
    if isinstance(kind, types.Integer):
        return ColumnCodec(name, "int4", _int, ordered=True, formatter=_int_text, plain=int)
    if isinstance(kind, types.Float):
        return ColumnCodec(name, "float8", float, ordered=True)
    if isinstance(kind, types.Numeric):
        extras: tuple[tuple[str, int], ...] = ()
        if kind.precision is not None:
            extras = (("precision", kind.precision), ("scale", kind.scale or 0))
        return ColumnCodec(name, "numeric", decimal.Decimal, ordered=True, extras=extras)
    if isinstance(kind, types.DateTime):
        if kind.timezone:
            return ColumnCodec(name, "timestamptz", _aware_datetime, ordered=True)
        return ColumnCodec(name, "timestamp", _datetime, ordered=True)
    if isinstance(kind, types.Date):
        return ColumnCodec(name, "date", dt.date.fromisoformat, ordered=True)
    if isinstance(kind, types.Uuid):
        return ColumnCodec(name, "uuid", uuid.UUID, ordered=False)
    if isinstance(kind, types.JSON):
        return ColumnCodec(name, "jsonb", str, ordered=False)
    if isinstance(kind, types.LargeBinary):
        return ColumnCodec(name, "bytea", str, ordered=False)
    if (
        isinstance(kind, types.String)
        and getattr(kind, "length", None)
        and not isinstance(kind, types.Text)
    ):
        length = int(kind.length or 0)
        return ColumnCodec(
            name,
            "varchar",
            str,
            False,
            (("max_length", length),),
            formatter=_plain_text,
            plain=str,
        )
    return ColumnCodec(name, "text", str, ordered=False, formatter=_plain_text, plain=str)
