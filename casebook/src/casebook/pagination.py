"""Keyset (cursor) pagination and sparse fieldsets.

A cursor is an opaque URL-safe token holding the sort key of the last row served. Pages are
``WHERE (sort_key, id) < (:last)`` slices of one index, so rows inserted while a client pages
never shift a page: nothing is served twice and no row that existed when paging began is
skipped. Bad cursors and unknown fields are 400s, never 500s.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from lockstep import BadRequestError

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
_ID_MAX = 2**31 - 1


def encode_cursor(values: Sequence[Any]) -> str:
    raw = orjson.dumps(list(values))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str, *kinds: type[int] | type[dt.date] | type[str]) -> list[Any]:
    """The values stored by :func:`encode_cursor`, one per ``kinds`` entry and of that kind
    (``int``: an id in the column's range; ``dt.date``: an ISO date; ``str``: a text of at
    most 200 characters without NUL); BadRequestError for anything else, whatever the token
    decodes to."""
    invalid = BadRequestError("invalid cursor", details={"cursor": token[:100]})
    try:
        padded = token + "=" * (-len(token) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise invalid from None
    if not isinstance(values, list) or len(values) != len(kinds):
        raise invalid
    decoded: list[Any] = []
    for kind, value in zip(kinds, values, strict=True):
        if kind is int:
            if type(value) is not int or not 0 <= value <= _ID_MAX:
                raise invalid
            decoded.append(value)
        elif kind is str:
            if type(value) is not str or len(value) > 200 or "\x00" in value:
                raise invalid
            decoded.append(value)
        else:
            try:
                decoded.append(dt.date.fromisoformat(value))
            except (TypeError, ValueError):
                raise invalid from None
    return decoded


def parse_fields(fields: str | None, allowed: Iterable[str]) -> frozenset[str] | None:
    """The requested subset of ``allowed`` (``None``: all); BadRequestError naming unknown ones."""
    if fields is None or not fields.strip():
        return None
    wanted = frozenset(f.strip() for f in fields.split(",") if f.strip())
    unknown = sorted(wanted - frozenset(allowed))
    if unknown:
        raise BadRequestError(
            f"unknown field(s) in 'fields': {', '.join(unknown)}",
            details={"unknown": unknown, "allowed": sorted(allowed)},
        )
    return wanted | {"id"}


def project(item: dict[str, Any], fields: frozenset[str] | None) -> dict[str, Any]:
    if fields is None:
        return item
    return {k: v for k, v in item.items() if k in fields}


def page(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor}
