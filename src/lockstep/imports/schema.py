"""What an import expects: named fields, the headers that may carry them, how each cell is
parsed, and a check of the converted rows. A file's header is *bound* once; then each
batch of records converts to :class:`~lockstep.db.Columns` of the rows that passed, plus
the rejects (row number, column, reason) of those that did not.

Conversion works a column at a time: a well-formed batch is transposed (``zip``), and
each column is parsed through a per-batch memo, so a column that repeats itself (dates,
categories, currencies) costs one parse per distinct value. Parsers must therefore be
functions of the cell's text alone (the ones in :mod:`.parsers` are). A batch in which
any cell fails takes the careful path, record by record, which names every reason.

Header matching ignores case, surrounding spaces and quotes, and treats spaces, dashes and
dots as underscores: ``"Posting Date"``, ``posting-date`` and ``POSTING_DATE`` are one name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lockstep.db.columns import Columns, Memo
from lockstep.exceptions import ValidationFailedError
from lockstep.imports.parsers import Parser

_SEPARATORS = re.compile(r"[\s\-.]+")

BatchCheck = Callable[[Columns], Iterable[tuple[int, str]]]
"""Validation across fields, a batch at a time: adjust values in place (``batch["amount"][i]
= ...``) and yield ``(index, "column: reason")`` for each row refused (once per row)."""


def normalize(header: str) -> str:
    cleaned = header.strip().strip("\ufeff").strip().strip("\"'").strip().lower()
    return _SEPARATORS.sub("_", cleaned)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one row (or one cell of it) was refused. ``row`` is the line number in the file
    where the record starts (the header is line 1)."""

    row: int
    column: str
    reason: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class ImportField:
    """One value of an imported row. ``aliases`` are other accepted header names. A field
    that is not ``required`` may be missing from the file or empty in a row: it then takes
    ``default``. ``position``: the column that holds it, whatever the header says (a
    statement mapping knows it); None to find it by name."""

    name: str
    parse: Parser
    aliases: tuple[str, ...] = ()
    required: bool = True
    default: Any = None
    position: int | None = None

    def names(self) -> tuple[str, ...]:
        return (normalize(self.name), *(normalize(a) for a in self.aliases))


class _Empty(Exception):
    """A required cell is empty (the careful path says so)."""


@dataclass(frozen=True, slots=True)
class Binding:
    """A schema matched to one file's header."""

    fields: tuple[tuple[ImportField, int | None], ...]
    header: tuple[str, ...]
    ignored: tuple[str, ...]
    check: BatchCheck | None = None
    line_field: str | None = None
    _width: int = field(default=0)
    # For the fast path: per field the header has, its name, position and converter
    # (which keeps state for this file: its memo); the defaults of the rest.
    _present: tuple[tuple[str, int, _Converter], ...] = ()
    _absent: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(
        cls,
        fields: tuple[tuple[ImportField, int | None], ...],
        header: tuple[str, ...],
        ignored: tuple[str, ...],
        check: BatchCheck | None,
        line_field: str | None = None,
    ) -> Binding:
        present = tuple(
            (spec.name, position, _Converter(spec))
            for spec, position in fields
            if position is not None
        )
        absent = tuple((spec.name, spec.default) for spec, position in fields if position is None)
        return cls(fields, header, ignored, check, line_field, len(header), present, absent)

    @property
    def names(self) -> tuple[str, ...]:
        names = tuple(spec.name for spec, _ in self.fields)
        return (*names, self.line_field) if self.line_field else names

    def convert(self, row: int, cells: Sequence[str]) -> dict[str, Any] | list[Rejection]:
        """The values of one record (line ``row``), or every reason it is refused."""
        batch, rejects = self.convert_batch([row], [cells])
        return rejects[0] if rejects else next(batch.rows())

    def convert_batch(
        self, lines: Sequence[int], records: Sequence[Sequence[str]]
    ) -> tuple[Columns, list[list[Rejection]]]:
        """The rows of ``records`` (which start on ``lines``) that pass, as columns named
        by the fields, and the rejects of each refused row, in file order."""
        batch = self._fast(lines, records)
        refused: list[list[Rejection]] = []
        if batch is None:
            good: list[dict[str, Any]] = []
            kept: list[int] = []
            for line, cells in zip(lines, records, strict=True):
                converted = self._careful(line, cells)
                if isinstance(converted, dict):
                    good.append(converted)
                    kept.append(line)
                else:
                    refused.append(converted)
            batch = Columns.of_rows(good, self.names)
            lines = kept
        if self.check is not None and len(batch):
            failed: dict[int, Rejection] = {}
            for index, message in self.check(batch):
                column, _, reason = message.partition(": ")
                failed.setdefault(
                    index, Rejection(lines[index], column if reason else "", reason or column)
                )
            if failed:
                refused += [[r] for r in failed.values()]
                refused.sort(key=lambda r: r[0].row)
                batch = batch.where([i not in failed for i in range(len(batch))])
        return batch, refused

    def _fast(self, lines: Sequence[int], records: Sequence[Sequence[str]]) -> Columns | None:
        """Columns of ``records`` when every one is well formed and every cell converts;
        None when any is in doubt (the careful path then says why)."""
        n = len(records)
        if n == 0:
            return Columns({name: [] for name in self.names}, 0)
        if any(len(cells) != self._width for cells in records):
            return None
        by_position = list(zip(*records, strict=True))
        data: dict[str, list[Any]] = {}
        try:
            for name, position, column in self._present:
                data[name] = column.convert(by_position[position])
        except (ValueError, _Empty):
            return None
        for name, default in self._absent:
            data[name] = [default] * n
        if self.line_field:
            data[self.line_field] = list(lines)
        return Columns({name: data[name] for name in self.names}, n)

    def _careful(self, row: int, cells: Sequence[str]) -> dict[str, Any] | list[Rejection]:
        out: dict[str, Any] = {}
        rejects: list[Rejection] = []
        n = len(cells)
        for spec, position in self.fields:
            raw = cells[position] if position is not None and position < n else ""
            if not raw.strip():
                if spec.required:
                    column = self.header[position] if position is not None else spec.name
                    rejects.append(Rejection(row, column, "is required", ""))
                else:
                    out[spec.name] = spec.default
                continue
            try:
                out[spec.name] = spec.parse(raw)
            except ValueError as exc:
                column = self.header[position] if position is not None else spec.name
                rejects.append(Rejection(row, column, str(exc), raw[:200]))
        if n > self._width and any(c.strip() for c in cells[self._width :]):
            rejects.append(Rejection(row, "", f"has {n} cells, the header {self._width}", ""))
        if self.line_field:
            out[self.line_field] = row
        return rejects or out


class _Converter:
    """The fast path's converter of one field's cells, for one file: through a memo (one
    parse per distinct text) while the column repeats itself, plain once it proves mostly
    distinct (amounts, descriptions), where a memo would only cost."""

    __slots__ = ("default", "memo", "parse", "required", "seen")

    MEMO_LIMIT = 1 << 16  # distinct texts kept at most; then the memo starts over
    TRIAL = 2048  # cells seen before judging whether the memo pays

    def __init__(self, spec: ImportField) -> None:
        self.parse, self.required, self.default = spec.parse, spec.required, spec.default
        self.memo: Memo | None = Memo(self.cell)
        self.seen = 0

    def cell(self, raw: str) -> Any:
        if raw and not raw.isspace():
            return self.parse(raw)
        if self.required:
            raise _Empty
        return self.default

    def convert(self, cells: Sequence[str]) -> list[Any]:
        memo = self.memo
        if memo is None:
            return list(map(self.cell, cells))
        out = list(map(memo.__getitem__, cells))
        self.seen += len(cells)
        if self.seen >= self.TRIAL and len(memo) * 2 > self.seen:
            self.memo = None  # more than half the cells were new
        elif len(memo) > self.MEMO_LIMIT:
            memo.clear()
            self.seen = 0
        return out


class ImportSchema:
    """The fields of an import, in any column order, plus an optional check of the converted
    rows (a :data:`BatchCheck`)."""

    def __init__(
        self,
        fields: Sequence[ImportField],
        *,
        check: BatchCheck | None = None,
        line_field: str | None = None,
    ) -> None:
        """``line_field``: also give each row its line number in the file, in this field."""
        self.fields = tuple(fields)
        self.check = check
        self.line_field = line_field
        seen: dict[str, str] = {}
        for spec in self.fields:
            for name in spec.names():
                if name in seen and seen[name] != spec.name:
                    raise ValueError(f"header name {name!r} is claimed by two fields")
                seen[name] = spec.name

    def bind(self, header: Sequence[str]) -> Binding:
        """Match ``header`` to the fields. Raises ValidationFailedError naming every missing
        required column (and what the file has instead)."""
        normalized = [normalize(h) for h in header]
        positions: list[tuple[ImportField, int | None]] = []
        used: set[int] = set()
        missing: list[ImportField] = []
        for spec in self.fields:
            found = (
                spec.position
                if spec.position is not None and spec.position < len(header)
                else next(
                    (
                        i
                        for i, h in enumerate(normalized)
                        if spec.position is None and h in spec.names() and i not in used
                    ),
                    None,
                )
            )
            if found is None and spec.required:
                missing.append(spec)
            if found is not None:
                used.add(found)
            positions.append((spec, found))
        if missing:
            raise ValidationFailedError(
                "the file lacks required column(s): "
                + "; ".join(
                    f"{m.name} (or {', '.join(m.aliases)})" if m.aliases else m.name
                    for m in missing
                )
                + f". Its header is: {', '.join(h.strip() for h in header)}",
                details=[
                    {
                        "loc": ["file", "header"],
                        "msg": f"missing column {m.name}",
                        "type": "missing",
                    }
                    for m in missing
                ],
            )
        ignored = tuple(h for i, h in enumerate(header) if i not in used and h.strip())
        return Binding.of(tuple(positions), tuple(header), ignored, self.check, self.line_field)

    @staticmethod
    def of(mapping: Mapping[str, Parser]) -> ImportSchema:
        """A schema of required fields named as the keys (headers must match the names)."""
        return ImportSchema([ImportField(name, parse) for name, parse in mapping.items()])
