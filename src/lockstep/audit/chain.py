"""The hash chain of an audit trail: how an entry's hash is made, and how a chain is checked.

Pure functions over values, no I/O. Every entry of a chain carries the hash of the one before
it; its own hash is a SHA-256 over its canonical JSON form (chain, position, time, actor,
table, row key, operation, changes) and that previous hash. Changing any stored field of an
entry, removing an entry from the middle, or reordering entries breaks the chain at that
point, which :func:`first_break` reports. What a chain cannot show by itself is its own tail
being cut off: keep the latest head hash somewhere else (a report, a ticket) to prove that.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64
"""The ``previous`` hash of a chain's first entry."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One audited write to one row (or one statement that wrote rows it did not name)."""

    chain: str
    seq: int
    at: str  # ISO 8601, UTC
    actor: str | None
    table: str
    key: str | None
    op: str
    changes: Mapping[str, Any]
    previous: str
    hash: str = ""

    def digest(self) -> str:
        """The hash this entry must carry (over every field but ``hash`` itself)."""
        body = orjson.dumps(
            [
                self.chain,
                self.seq,
                self.at,
                self.actor,
                self.table,
                self.key,
                self.op,
                self.changes,
                self.previous,
            ],
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(body).hexdigest()


def json_value(value: Any) -> Any:
    """A row value as JSON keeps it, one spelling per value: dates and times in ISO 8601,
    decimals as strings, enums by value, bytes in hex, UUIDs as strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Break:
    """Where a chain stops being intact, and why."""

    seq: int
    reason: str


class ChainCheck:
    """Checks one chain an entry at a time, in ``seq`` order (so a long chain is read a page
    at a time): :meth:`add` returns the first :class:`Break`, then keeps returning it."""

    def __init__(self) -> None:
        self.expected_seq = 1
        self.previous = GENESIS
        self.broken: Break | None = None

    def add(self, entry: Entry) -> Break | None:
        if self.broken is not None:
            return self.broken
        if entry.seq != self.expected_seq:
            reason = f"expected entry {self.expected_seq}, found {entry.seq}"
            self.broken = Break(entry.seq, reason)
        elif entry.previous != self.previous:
            self.broken = Break(entry.seq, "does not follow the entry before it (previous hash)")
        elif entry.digest() != entry.hash:
            self.broken = Break(entry.seq, "its content does not match its hash (altered)")
        else:
            self.previous = entry.hash
            self.expected_seq += 1
        return self.broken


def first_break(entries: Iterable[Entry]) -> Break | None:
    """The first place ``entries`` (one chain, in ``seq`` order) are not an intact chain:
    a missing or repeated position, a ``previous`` that is not the hash before it, or a
    hash that does not match the entry's content. None when the chain is intact."""
    check = ChainCheck()
    for entry in entries:
        if check.add(entry) is not None:
            break
    return check.broken
