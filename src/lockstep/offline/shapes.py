"""Shapes an application exposes, and what one shape request asks for.

A :class:`Shape` is declared by the app: a table, the columns clients may read and filter
on, and a ``scope`` that turns the caller's request into the rows they may see (usually
``{"organization_id": ...}``). Tables not declared are refused. :class:`ShapeRequest` is one
``GET /v1/shape`` parsed: offsets, the client's ``where``/``params``/``columns``; together
with the caller's scope it becomes a :class:`ResolvedShape`, whose ``handle`` names exactly
that definition (table, columns, both filters, the table's schema, the log's generation and
the table's rotation epoch), so any change to one of them is a new handle and a 409.

Offsets (opaque to clients, ``<a>_<b>`` like Electric's): ``-1`` and ``now``; ``<p>_<k>``
while an initial snapshot taken at position ``p`` is paged by primary key (``k`` the last
key sent); ``<p>_inf`` once everything up to log position ``p`` was sent.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, Table
from starlette.requests import Request

from lockstep.exceptions import BadRequestError, ConfigurationError
from lockstep.offline import filters
from lockstep.offline.capture import ShapedTable
from lockstep.offline.filters import Filter
from lockstep.offline.values import ColumnCodec

ScopeFunction = Callable[[Request], "Mapping[str, Any] | Filter | Awaitable[Any] | None"]


@dataclass(frozen=True, slots=True)
class Shape:
    """One table clients may sync.

    ``columns``: what clients may select and filter on (None: every column; the primary key
    is always included). ``scope(request)`` returns the caller's rows as ``{column: value}``
    (a list means any of), a :data:`~lockstep.offline.filters.Filter`, or None for a public
    shape; it may raise ``AuthenticationError``/``PermissionDeniedError``. Scope columns
    need not be among ``columns``. ``name`` is what clients put in ``table=`` (default: the
    table's name).
    """

    table: Table
    scope: ScopeFunction | None = None
    columns: Sequence[str] | None = None
    name: str | None = None

    @property
    def public_name(self) -> str:
        return self.name or str(self.table.name)


class ShapeDefinition:
    """A declared :class:`Shape` checked against its table, with its codecs."""

    def __init__(self, shape: Shape, shaped: ShapedTable) -> None:
        self.shape = shape
        self.shaped = shaped
        self.name = shape.public_name
        wanted = list(shape.columns) if shape.columns is not None else list(shaped.codecs)
        unknown = [c for c in wanted if c not in shaped.codecs]
        if unknown:
            raise ConfigurationError(f"shape {self.name!r} names unknown columns {unknown}")
        self.columns: tuple[str, ...] = tuple(dict.fromkeys([*shaped.key, *wanted]))
        self.codecs: dict[str, ColumnCodec] = {c: shaped.codecs[c] for c in self.columns}
        key_columns = [shaped.table.c[c] for c in shaped.key]
        # Snapshots are paged by key when the key is one integer column (its order is the
        # same in Python and in every database); other tables send their snapshot at once.
        self.paged = len(key_columns) == 1 and isinstance(key_columns[0].type, Integer)
        self.fingerprint = hashlib.sha256(
            repr([(c, shaped.codecs[c].pg_type) for c in shaped.codecs]).encode()
        ).hexdigest()[:12]

    async def scope_of(self, request: Request) -> Filter:
        function = self.shape.scope
        if function is None:
            return filters.TRUE
        found = function(request)
        if inspect.isawaitable(found):
            found = await found
        if found is None:
            return filters.TRUE
        if isinstance(found, Mapping):
            unknown = [c for c in found if c not in self.shaped.codecs]
            if unknown:
                raise ConfigurationError(f"the scope of {self.name!r} names {unknown}")
            return filters.equal_to(found)
        return found


@dataclass(frozen=True, slots=True)
class Offset:
    """A parsed offset: ``position`` and, while a snapshot is paged, ``last_key``."""

    kind: str  # "start" | "now" | "snapshot" | "log"
    position: int = 0
    last_key: int | None = None

    def text(self) -> str:
        if self.kind == "start":
            return "-1"
        if self.kind == "now":
            return "now"
        if self.kind == "snapshot":
            return f"{self.position}_{self.last_key}"
        return f"{self.position}_inf"

    @classmethod
    def parse(cls, text: str | None) -> Offset:
        if text is None:
            raise BadRequestError("offset is required (-1 for a new shape)")
        if text == "-1":
            return cls("start")
        if text == "now":
            return cls("now")
        match = re.fullmatch(r"(0|[1-9][0-9]{0,18})_(inf|-?[0-9]{1,19})", text)
        if match is None:
            raise BadRequestError(f"offset {text[:40]!r} is not an offset this server gave")
        if match.group(2) == "inf":
            return cls("log", int(match.group(1)))
        return cls("snapshot", int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True, slots=True)
class ShapeRequest:
    """The parameters of one ``GET /v1/shape`` (unknown parameters are ignored)."""

    table: str
    offset: Offset
    handle: str | None = None
    live: bool = False
    cursor: str | None = None
    where: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    columns: str | None = None
    replica: str = "default"
    changes_only: bool = False

    @classmethod
    def parse(cls, query: Sequence[tuple[str, str]]) -> ShapeRequest:
        values = dict(query)
        table = values.get("table")
        if not table:
            raise BadRequestError("table is required")
        if any(key.startswith("subset__") for key in values):
            raise BadRequestError("subset snapshots are not supported; use where on the shape")
        replica = values.get("replica", "default")
        if replica not in ("default", "full"):
            raise BadRequestError("replica must be default or full")
        offset = Offset.parse(values.get("offset"))
        handle = values.get("handle") or None
        if offset.kind in ("snapshot", "log") and handle is None:
            raise BadRequestError("handle is required with an offset other than -1 or now")
        return cls(
            table=table,
            offset=offset,
            handle=handle,
            live=values.get("live") == "true",
            cursor=values.get("cursor"),
            where=values.get("where"),
            params=filters.parse_params(query),
            columns=values.get("columns"),
            replica=replica,
            changes_only=values.get("log") == "changes_only",
        )


@dataclass(frozen=True, slots=True)
class ResolvedShape:
    """A request's shape for its caller: what to read and send, and its handle."""

    definition: ShapeDefinition
    columns: tuple[str, ...]
    filter: Filter
    replica: str
    handle: str

    @property
    def table(self) -> Table:
        return self.definition.shaped.table


def selected_columns(definition: ShapeDefinition, text: str | None) -> tuple[str, ...]:
    """The ``columns`` parameter (comma-separated, identifiers optionally double-quoted):
    declared columns only; the primary key is added when left out."""
    if text is None or not text.strip():
        return definition.columns
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('""', '"')
        if not name:
            raise BadRequestError(f"columns {text[:80]!r} is not a list of column names")
        names.append(name)
    unknown = [n for n in names if n not in definition.codecs]
    if unknown:
        raise BadRequestError(f"columns not in this shape: {', '.join(unknown)}")
    return tuple(dict.fromkeys([*definition.shaped.key, *names]))


def resolve(
    definition: ShapeDefinition,
    request: ShapeRequest,
    scope: Filter,
    *,
    generation: str,
    epoch: int,
    version: str,
) -> ResolvedShape:
    """The shape ``request`` asks of ``definition`` within ``scope``. Raises a 400 for a
    ``where`` or ``columns`` outside the declaration."""
    columns = selected_columns(definition, request.columns)
    where = filters.parse(request.where, definition.codecs, request.params)
    combined = filters.both(scope, where)
    identity = "\n".join(
        [
            generation,
            version,
            definition.name,
            definition.fingerprint,
            ",".join(columns),
            filters.canonical_text(combined),
            request.replica,
        ]
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    return ResolvedShape(definition, columns, combined, request.replica, f"{epoch}-{digest}")
