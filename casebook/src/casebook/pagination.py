"""Keyset (cursor) pagination and sparse fieldsets.

A cursor is an opaque URL-safe token holding the sort key of the last row served. Pages are
``WHERE (sort_key, id) < (:last)`` slices of one index, so rows inserted while a client pages
never shift a page: nothing is served twice and no row that existed when paging began is
skipped. Bad cursors and unknown fields are 400s, never 500s.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from lockstep import BadRequestError

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


def encode_cursor(values: Sequence[Any]) -> str:
    raw = orjson.dumps(list(values))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str, arity: int) -> list[Any]:
    """The values stored by :func:`encode_cursor`; BadRequestError when tampered with."""
    try:
        padded = token + "=" * (-len(token) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise BadRequestError("invalid cursor", details={"cursor": token[:100]}) from None
    if not isinstance(values, list) or len(values) != arity:
        raise BadRequestError("invalid cursor", details={"cursor": token[:100]})
    return values


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
