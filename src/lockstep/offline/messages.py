"""What a client receives: shape-log entries and snapshot rows turned into Electric messages.

Pure functions over values (no I/O), so the decisions that make a shape exact are tested on
their own:

* :func:`changes` — for each logged row change, whether the row was in the shape before and
  is after (the filter evaluated on both images): ``insert`` when it enters (full row),
  ``update`` while it stays (key + changed columns; every column and ``old_value`` with
  ``replica=full``), ``delete`` when it leaves (key; the whole old row with
  ``replica=full``). A row leaving the caller's scope is a delete like any other.
* :func:`rows_at` — a page of the snapshot as it was at the snapshot's position, from the
  rows as they are now and the log since: a snapshot paged over several requests is still
  one consistent snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from lockstep.offline import filters

if TYPE_CHECKING:  # shapes imports capture, which logs these entries
    from lockstep.offline.shapes import ResolvedShape

Image = Mapping[str, str | None]
"""A row as column → PostgreSQL text (None: NULL)."""

Row = tuple[str | None, ...]
"""A snapshot row: the texts of a shape's columns, in the shape's order."""

UP_TO_DATE: dict[str, Any] = {"headers": {"control": "up-to-date"}}
MUST_REFETCH: dict[str, Any] = {"headers": {"control": "must-refetch"}}


@dataclass(frozen=True, slots=True)
class Entry:
    """One logged row change (``key`` None: a rotation of the table)."""

    position: int
    txid: int
    key: str | None
    before: Image | None
    after: Image | None

    @classmethod
    def of_row(
        cls, position: int, txid: int, key: str | None, before: str | None, after: str | None
    ) -> Entry:
        return cls(
            position,
            txid,
            key,
            None if before is None else orjson.loads(before),
            None if after is None else orjson.loads(after),
        )


def message_key(shape: ResolvedShape, image: Image) -> str:
    """Electric's row key: ``"public"."table"/"<pk>"`` (one ``/"v"`` per key column)."""
    shaped = shape.definition.shaped
    if len(shaped.key) == 1:  # the common case, on every row of a snapshot
        value = str(image[shaped.key[0]])
        if '"' in value:
            value = value.replace('"', '""')
        return f'"public"."{shaped.name}"/"{value}"'
    parts = "".join('/"' + str(image[c]).replace('"', '""') + '"' for c in shaped.key)
    return f'"public"."{shaped.name}"{parts}'


def in_shape(shape: ResolvedShape, image: Image | None) -> bool:
    """Whether the row ``image`` (None: absent) belongs to ``shape``."""
    if image is None:
        return False
    codecs = shape.definition.shaped.codecs
    wanted = filters.columns_of(shape.filter)
    values = {c: codecs[c].parse(image.get(c)) for c in wanted}
    return filters.matches(shape.filter, values)


def insert(shape: ResolvedShape, image: Image, txid: int | None = None) -> dict[str, Any]:
    headers: dict[str, Any] = {"operation": "insert"}
    if txid is not None:
        headers["txids"] = [txid]
    value = {c: image.get(c) for c in shape.columns}
    return {"key": message_key(shape, image), "value": value, "headers": headers}


_INSERT_HEADERS: Mapping[str, Any] = {"operation": "insert"}

ENCODE_ROWS = 128
"""Insert messages encoded per ``orjson.dumps`` call: few enough that a batch's dicts are
freed before the garbage collector's youngest generation fills (700 allocations), so they
are never promoted and swept later, which costs more than building them."""


def inserts(shape: ResolvedShape, rows: Sequence[Row]) -> bytes:
    """The ``insert`` messages of snapshot rows, encoded: the items of a JSON array, comma
    separated, without its brackets (empty for no rows); the same bytes as ``orjson.dumps``
    of :func:`insert` of each row, built in batches (:data:`ENCODE_ROWS`)."""
    shaped = shape.definition.shaped
    columns = shape.columns
    if len(shaped.key) == 1:
        at = columns.index(shaped.key[0])
        prefix = f'"public"."{shaped.name}"/"'
        keys = [
            prefix + (text.replace('"', '""') if '"' in text else text) + '"'
            for text in (str(row[at]) for row in rows)
        ]
    else:
        keys = [message_key(shape, dict(zip(columns, row, strict=True))) for row in rows]
    headers = _INSERT_HEADERS
    parts = []
    for start in range(0, len(rows), ENCODE_ROWS):
        batch = [
            {"key": key, "value": dict(zip(columns, row, strict=True)), "headers": headers}
            for key, row in zip(
                keys[start : start + ENCODE_ROWS], rows[start : start + ENCODE_ROWS], strict=True
            )
        ]
        parts.append(orjson.dumps(batch)[1:-1])
    return b",".join(parts)


def changes(shape: ResolvedShape, entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """The messages ``entries`` (in log order) make for ``shape``."""
    out: list[dict[str, Any]] = []
    key_columns = shape.definition.shaped.key
    for entry in entries:
        was, now = in_shape(shape, entry.before), in_shape(shape, entry.after)
        headers: dict[str, Any] = {"txids": [entry.txid]}
        if now and not was:
            assert entry.after is not None
            out.append(insert(shape, entry.after, entry.txid))
        elif was and not now:
            assert entry.before is not None
            columns = shape.columns if shape.replica == "full" else key_columns
            out.append(
                {
                    "key": message_key(shape, entry.before),
                    "value": {c: entry.before.get(c) for c in columns},
                    "headers": {"operation": "delete", **headers},
                }
            )
        elif was and now:
            assert entry.before is not None
            assert entry.after is not None
            before, after = entry.before, entry.after
            changed = [c for c in shape.columns if before.get(c) != after.get(c)]
            if not changed:
                continue  # only columns this shape does not send changed
            message: dict[str, Any] = {
                "key": message_key(shape, after),
                "headers": {"operation": "update", **headers},
            }
            if shape.replica == "full":
                message["value"] = {c: after.get(c) for c in shape.columns}
                message["old_value"] = {c: before.get(c) for c in changed}
            else:
                shown = dict.fromkeys([*key_columns, *changed])
                message["value"] = {c: after.get(c) for c in shown}
            out.append(message)
    return out


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a snapshot: its rows in key order; ``last_key`` the key to continue
    after, None when the snapshot is complete."""

    rows: list[Row]
    last_key: int | None


def rows_at(
    shape: ResolvedShape,
    current: Sequence[Row],
    since: Iterable[Entry],
    *,
    after_key: int | None,
    limit: int | None,
    current_complete: bool,
) -> Page:
    """The page after ``after_key`` of ``shape`` as it was at the snapshot's position.

    ``current``: the rows in the shape now, key order, keys above ``after_key``, at most
    ``limit + 1`` of them (``current_complete``: fewer came back, so none lie beyond); rows
    put back from the log are cut to the shape's columns like them.
    ``since``: the log entries of the table after the snapshot's position, up to the moment
    ``current`` was read (the same read). A row changed since is put back as it was before
    its first change, or left out if it was not in the shape then.
    """
    key = shape.definition.shaped.key[0]
    columns = shape.columns
    at = columns.index(key)
    if not since:  # nothing changed since the snapshot's position: the rows as read
        if limit is not None and len(current) > limit:
            return Page(list(current[:limit]), int(str(current[limit - 1][at])))
        return Page(list(current), None)
    first: dict[int, Entry] = {}
    for entry in since:
        if entry.key is None:
            raise ValueError("a rotation lies inside the snapshot")
        image = entry.before if entry.before is not None else entry.after
        assert image is not None
        first.setdefault(int(str(image[key])), entry)
    # Everything with a key up to `bound` is known: the current rows all came back up to it.
    bound = None if current_complete or not current else int(str(current[-1][at]))
    merged: dict[int, Row] = {}
    for row in current:
        number = int(str(row[at]))
        if number not in first:
            merged[number] = row
    for number, entry in first.items():
        if after_key is not None and number <= after_key:
            continue
        if bound is not None and number > bound:
            continue
        if entry.before is not None and in_shape(shape, entry.before):
            merged[number] = tuple(entry.before.get(c) for c in columns)
    ordered = [merged[k] for k in sorted(merged)]
    if limit is not None and len(ordered) > limit:
        page = ordered[:limit]
        return Page(page, int(str(page[-1][at])))
    if bound is not None:
        return Page(ordered, bound)
    return Page(ordered, None)
