"""A batch of rows held a column at a time, the unit of lockstep's bulk path.

    batch = Columns({"posted_on": dates, "amount_cents": amounts})
    batch.fill("case_id", 7)                      # the same value in every row
    await bulk_insert(session, LEDGER, batch)

Why columns: an import converts, validates, groups (rollups) and hands its rows to the
driver. Over a list of dicts each of those steps is a Python step per row and value; over
lists of one column's values most become one ``map`` or ``zip`` running at C speed, and a
column that repeats itself (dates, categories, a constant case id) converts through a
:class:`Memo` once per distinct value. ``bench/aggregates.py`` measures the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import compress
from typing import Any


class Columns:
    """Rows as one list per column name, every list as long as the batch.

    ``batch[name]`` is the list itself (change it in place to adjust values), ``len(batch)``
    the number of rows and ``batch.names`` the column names in order.
    """

    __slots__ = ("_data", "_length")

    def __init__(self, data: Mapping[str, Sequence[Any]], length: int | None = None) -> None:
        """``length``: the number of rows when ``data`` has no columns (else taken from it);
        raises ValueError when the columns differ in length."""
        self._data = {name: v if type(v) is list else list(v) for name, v in data.items()}
        lengths = {len(v) for v in self._data.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._length = lengths.pop() if lengths else (length or 0)
        if length is not None and length != self._length:
            raise ValueError(f"{length} rows announced, the columns hold {self._length}")

    @classmethod
    def of_rows(
        cls, rows: Sequence[Mapping[str, Any]], names: Iterable[str] | None = None
    ) -> Columns:
        """The columns ``names`` (default: the first row's keys) of ``rows``. Raises
        KeyError naming a column some row lacks."""
        if names is None:
            names = tuple(rows[0]) if rows else ()
        data: dict[str, list[Any]] = {}
        for name in names:
            try:
                data[name] = [row[name] for row in rows]
            except KeyError:
                raise KeyError(name) from None
        return cls(data, len(rows))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._data)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, name: str) -> list[Any]:
        return self._data[name]

    def __setitem__(self, name: str, values: Sequence[Any]) -> None:
        values = values if type(values) is list else list(values)
        if len(values) != self._length:
            raise ValueError(f"column {name!r} has {len(values)} values for {self._length} rows")
        self._data[name] = values

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def get(self, name: str, default: Any = None) -> Any:
        return self._data.get(name, default)

    def fill(self, name: str, value: Any) -> None:
        """Set column ``name`` to ``value`` in every row."""
        self._data[name] = [value] * self._length

    def extend(self, other: Columns) -> None:
        """Append the rows of ``other``, which has the same column names."""
        if other.names != self.names:
            raise ValueError(f"cannot extend columns {self.names} with {other.names}")
        for name, values in self._data.items():
            values.extend(other[name])
        self._length += len(other)

    def with_columns(self, more: Mapping[str, list[Any]]) -> Columns:
        """A batch with this one's columns (the same lists) plus ``more``."""
        return Columns({**self._data, **more}, self._length)

    def where(self, keep: Sequence[Any]) -> Columns:
        """The rows whose ``keep`` entry is true, in order (new lists)."""
        return Columns(
            {n: list(compress(v, keep)) for n, v in self._data.items()}, sum(map(bool, keep))
        )

    def tuples(self, names: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """One tuple per row of the columns ``names``, made as they are taken."""
        if not names:
            return iter([()] * self._length)
        return zip(*(self._data[n] for n in names), strict=True)

    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per row."""
        names = self.names
        return (dict(zip(names, values, strict=True)) for values in self.tuples(names))

    def __repr__(self) -> str:
        return f"Columns({self._length} rows: {', '.join(self._data)})"


class Memo(dict[Any, Any]):
    """``memo[value]`` is ``fn(value)``, computed once per distinct value: ``list(map(
    Memo(fn).__getitem__, values))`` converts a column at C speed when it repeats itself
    (bulk inserts convert their columns this way, rollup maintenance keys its groups)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        super().__init__()
        self.fn = fn

    def __missing__(self, value: Any) -> Any:
        result = self[value] = self.fn(value)
        return result
