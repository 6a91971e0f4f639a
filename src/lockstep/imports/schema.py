"""What an import expects: named fields, the headers that may carry them, how each cell is
parsed, and row-level checks. A file's header is *bound* once; then every record converts
to a dict or to the list of its rejects (row number, column, reason).

Header matching ignores case, surrounding spaces and quotes, and treats spaces, dashes and
dots as underscores: ``"Posting Date"``, ``posting-date`` and ``POSTING_DATE`` are one name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lockstep.exceptions import ValidationFailedError
from lockstep.imports.parsers import Parser

_SEPARATORS = re.compile(r"[\s\-.]+")

RowCheck = Callable[[dict[str, Any]], None]
"""Row-level validation: adjust the row in place or raise ``ValueError("column: reason")``."""


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
    ``default``."""

    name: str
    parse: Parser
    aliases: tuple[str, ...] = ()
    required: bool = True
    default: Any = None

    def names(self) -> tuple[str, ...]:
        return (normalize(self.name), *(normalize(a) for a in self.aliases))


@dataclass(frozen=True, slots=True)
class Binding:
    """A schema matched to one file's header."""

    fields: tuple[tuple[ImportField, int | None], ...]
    header: tuple[str, ...]
    ignored: tuple[str, ...]
    check: RowCheck | None = None
    _width: int = field(default=0)
    # For the fast path: the fields the header has, flattened, and the defaults of the rest.
    _present: tuple[tuple[str, Parser, int, bool, Any], ...] = ()
    _absent: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(
        cls,
        fields: tuple[tuple[ImportField, int | None], ...],
        header: tuple[str, ...],
        ignored: tuple[str, ...],
        check: RowCheck | None,
    ) -> Binding:
        present = tuple(
            (spec.name, spec.parse, position, spec.required, spec.default)
            for spec, position in fields
            if position is not None
        )
        absent = tuple((spec.name, spec.default) for spec, position in fields if position is None)
        return cls(fields, header, ignored, check, len(header), present, absent)

    def convert(self, row: int, cells: Sequence[str]) -> dict[str, Any] | list[Rejection]:
        """The values of one record, or every reason it is refused."""
        if len(cells) == self._width:
            # Fast path for a well-formed record; any doubt goes to the careful path below.
            out: dict[str, Any] = dict(self._absent)
            try:
                for name, parse, position, required, default in self._present:
                    raw = cells[position]
                    if raw and not raw.isspace():
                        out[name] = parse(raw)
                    elif required:
                        break
                    else:
                        out[name] = default
                else:
                    if self.check is not None:
                        self.check(out)
                    return out
            except ValueError:
                pass
        return self._careful(row, cells)

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
        if rejects:
            return rejects
        if self.check is not None:
            try:
                self.check(out)
            except ValueError as exc:
                column, _, reason = str(exc).partition(": ")
                return [Rejection(row, column if reason else "", reason or column, "")]
        return out


class ImportSchema:
    """The fields of an import, in any column order, plus an optional row check."""

    def __init__(self, fields: Sequence[ImportField], *, check: RowCheck | None = None) -> None:
        self.fields = tuple(fields)
        self.check = check
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
            found = next(
                (i for i, h in enumerate(normalized) if h in spec.names() and i not in used),
                None,
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
        return Binding.of(tuple(positions), tuple(header), ignored, self.check)

    @staticmethod
    def of(mapping: Mapping[str, Parser]) -> ImportSchema:
        """A schema of required fields named as the keys (headers must match the names)."""
        return ImportSchema([ImportField(name, parse) for name, parse in mapping.items()])
