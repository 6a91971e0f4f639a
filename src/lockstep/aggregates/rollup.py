"""A rollup declaration: a source table, group keys, measures and an optional filter.

    by_month = Rollup(
        "rollup_monthly",
        Transaction,
        keys=["organization_id", month("posted_on"), "category"],
        measures=[Count(), Sum("amount_cents", "amount"), Max("amount_cents", "largest")],
        where={"flagged": False},
        metadata=Base.metadata,
    )

The rollup table (``by_month.table``) has one row per non-empty group: the key columns (its
primary key), ``row_count`` and each measure's storage (see :mod:`.measures`). It lives in
``metadata``, by default the source table's: so the application's ``Tracking`` covers it
(dashboards cached on its rows are invalidated exactly) and its migrations can see it.

The declaration is also where a row's contribution is computed in Python (:meth:`collect`)
and in SQL (:meth:`grouped`), identically.
"""

from __future__ import annotations

import enum
import functools
import operator
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import compress
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    Numeric,
    Select,
    Table,
    and_,
    case,
    cast,
    func,
    inspect,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Boolean

from lockstep.aggregates.delta import Deltas, GroupDelta, merge_extreme
from lockstep.aggregates.keys import Key, as_key, plain
from lockstep.aggregates.measures import Measure, slots
from lockstep.db.columns import Columns, Memo
from lockstep.exceptions import ConfigurationError

ROW_COUNT = "row_count"

_MISSING = object()


def source_table(source: Any) -> Table:
    """The Table of a mapped class (or the Table itself)."""
    if isinstance(source, Table):
        return source
    mapper = inspect(source, raiseerr=False)
    table = getattr(mapper, "local_table", None)
    if not isinstance(table, Table):
        raise ConfigurationError(f"a rollup source must be a Table or a mapped class: {source!r}")
    return table


class Rollup:
    """One maintained GROUP BY over ``source`` (a mapped class or a Table)."""

    def __init__(
        self,
        name: str,
        source: Any,
        *,
        keys: Sequence[str | Key],
        measures: Sequence[Measure],
        where: Mapping[str, Any] | None = None,
        metadata: MetaData | None = None,
    ) -> None:
        self.name = name
        self.source = source_table(source)
        self.keys: tuple[Key, ...] = tuple(as_key(k) for k in keys)
        self.measures = tuple(measures)
        self.where: dict[str, Any] = {c: plain(v) for c, v in (where or {}).items()}
        self.sums, self.extremes = slots(self.measures)
        self._validate()
        self.needed: tuple[str, ...] = tuple(
            dict.fromkeys(
                [k.source for k in self.keys]
                + [s.source for s in self.sums]
                + [e.source for e in self.extremes]
                + list(self.where)
            )
        )
        self.key_sources: tuple[str, ...] = tuple(dict.fromkeys(k.source for k in self.keys))
        # By default beside its source: the app's Tracking (and autogenerate) then covers it.
        self.table = self._build_table(metadata if metadata is not None else self.source.metadata)

    # -- declaration ---------------------------------------------------------------------------

    def _validate(self) -> None:
        if not self.keys:
            raise ConfigurationError(f"rollup {self.name!r} needs at least one group key")
        names = [k.name for k in self.keys] + [ROW_COUNT]
        names += [c for m in self.measures for c in m.storage]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigurationError(f"rollup {self.name!r} repeats column name(s) {duplicated}")
        columns = self.source.c
        for key in self.keys:
            self._require(key.source, "group key")
            if columns[key.source].nullable:
                raise ConfigurationError(
                    f"rollup {self.name!r}: group key column {self.source.name}.{key.source} "
                    "is nullable; make it NOT NULL (a NULL key cannot be a primary key)"
                )
            key.check(columns[key.source].type)
        for measure in self.measures:
            if measure.source is None:
                continue
            self._require(measure.source, f"{measure.kind} measure")
            column = columns[measure.source]
            if column.nullable:
                raise ConfigurationError(
                    f"rollup {self.name!r}: measure column {self.source.name}.{measure.source} "
                    "is nullable; measures need NOT NULL columns"
                )
            if measure.kind in ("sum", "avg") and not _is_integer(column.type):
                raise ConfigurationError(
                    f"rollup {self.name!r}: {measure.kind} of {measure.source} needs an integer "
                    f"column (got {column.type!r}); store money as integer cents so sums are exact"
                )
        for name in self.where:
            self._require(name, "filter")

    def _require(self, column: str, role: str) -> None:
        if column not in self.source.c:
            raise ConfigurationError(
                f"rollup {self.name!r}: {role} column {column!r} is not a column of "
                f"{self.source.name!r}"
            )

    def _build_table(self, metadata: MetaData) -> Table:
        if self.name in metadata.tables:
            raise ConfigurationError(f"table {self.name!r} is already defined in that metadata")
        columns: list[Column[Any]] = [
            Column(
                k.name,
                k.column_type(self.source.c[k.source].type),
                primary_key=True,
                autoincrement=False,
                nullable=False,
            )
            for k in self.keys
        ]
        columns.append(Column(ROW_COUNT, BigInteger, nullable=False))
        columns += [Column(s.column, BigInteger, nullable=False) for s in self.sums]
        for e in self.extremes:
            columns.append(Column(e.column, self.source.c[e.source].type, nullable=True))
            columns.append(Column(e.count_column, BigInteger, nullable=False))
        return Table(self.name, metadata, *columns)

    @functools.cached_property
    def value_columns(self) -> frozenset[str]:
        """The rollup table's columns that are not group keys."""
        keys = {k.name for k in self.keys}
        return frozenset(c.name for c in self.table.c if c.name not in keys)

    @property
    def key_columns(self) -> list[Column[Any]]:
        return [self.table.c[k.name] for k in self.keys]

    def __repr__(self) -> str:
        return f"Rollup({self.name!r} over {self.source.name!r})"

    # -- Python side: rows to deltas -------------------------------------------------------------

    def accepts(self, row: Mapping[str, Any]) -> bool:
        """Whether a source row (column name -> value) passes the filter."""
        return all(plain(row[c]) == v for c, v in self.where.items())

    def group_of(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(k.python(row[k.source]) for k in self.keys)

    def _passing(self, batch: dict[str, list[Any]]) -> list[Any]:
        """Per row, whether it passes the filter."""
        keep: list[Any] = []
        for column, wanted in self.where.items():
            # Plain equality first; an enum member compares by its value. Memoized: equal
            # values pass or fail alike.
            passes = Memo(functools.partial(_equals, wanted))
            tested = list(map(passes.__getitem__, batch[column]))
            keep = list(map(operator.and_, keep, tested)) if keep else tested
        return keep

    def collect(self, rows: Columns | Sequence[Mapping[str, Any]], sign: int, into: Deltas) -> None:
        """Add (``sign=1``) or remove (``sign=-1``) the contribution of ``rows`` to ``into``:
        a :class:`Columns` batch or row mappings (column name -> value), with every column of
        :attr:`needed` (else KeyError).

        Built for bulk imports, with no Python step per row: each key column is mapped
        through a memo (a dict whose misses compute the key), each row's group numbered the
        same way, the row numbers sorted by group (so a group's rows are one slice), and
        each group's sums and extremes taken by ``sum``/``max``/``min``/``count`` over its
        slice of the measure's column.
        """
        if isinstance(rows, Columns):
            batch = {name: rows[name] for name in self.needed}
        else:
            batch = {name: [row[name] for row in rows] for name in self.needed}
        if self.where:
            keep = self._passing(batch)
            if not any(keep):
                return
            if not all(keep):
                batch = {name: list(compress(values, keep)) for name, values in batch.items()}
        count = len(batch[self.needed[0]])
        if not count:
            return
        columns = [list(map(Memo(k.python).__getitem__, batch[k.source])) for k in self.keys]
        numbers: Memo = Memo(lambda _group: len(numbers))  # group -> 0, 1, ... as first seen
        group_of_row = list(map(numbers.__getitem__, zip(*columns, strict=True)))
        by_group = sorted(range(count), key=group_of_row.__getitem__)
        sizes = Counter(group_of_row)
        sums = [batch[s.source] for s in self.sums]
        extremes = [(batch[e.source], e.is_max) for e in self.extremes]
        start = 0
        for group, number in numbers.items():
            size = sizes[number]
            members = by_group[start : start + size]
            start += size
            delta = into.get(group)
            if delta is None:
                delta = into[group] = GroupDelta(group, len(sums), len(extremes))
            delta.rows += sign * size
            for i, values in enumerate(sums):
                delta.sums[i] += sign * sum(map(values.__getitem__, members))
            for i, (values, is_max) in enumerate(extremes):
                taken = list(map(values.__getitem__, members))
                best = max(taken) if is_max else min(taken)
                pair = (best, taken.count(best))
                if sign > 0:
                    delta.added[i] = merge_extreme(delta.added[i], pair, is_max=is_max)
                else:
                    delta.removed[i] = merge_extreme(delta.removed[i], pair, is_max=is_max)

    # -- SQL side -------------------------------------------------------------------------------

    def key_expressions(self) -> list[ColumnElement[Any]]:
        return [k.sql(self.source.c[k.source]) for k in self.keys]

    def filter_clause(self) -> ColumnElement[bool]:
        if not self.where:
            return true()
        return and_(*(self.source.c[c] == v for c, v in self.where.items()))

    def match(self, group: Sequence[Any]) -> ColumnElement[bool]:
        """Source rows of one group (sargable: an index on the key columns serves it)."""
        return and_(
            *(
                k.match(self.source.c[k.source], value)
                for k, value in zip(self.keys, group, strict=True)
            )
        )

    def match_any(self, groups: Iterable[Sequence[Any]]) -> ColumnElement[bool]:
        return or_(*(self.match(g) for g in groups))

    def grouped(self, where: ColumnElement[bool] | None = None) -> Select[Any]:
        """The GROUP BY this rollup maintains, with the rollup table's column names, over the
        source rows matching ``where`` (and the rollup's filter)."""
        condition = self.filter_clause() if where is None else and_(self.filter_clause(), where)
        keys = self.key_expressions()
        labelled = [e.label(k.name) for e, k in zip(keys, self.keys, strict=True)]
        sums = [
            cast(func.coalesce(func.sum(self.source.c[s.source]), 0), BigInteger).label(s.column)
            for s in self.sums
        ]
        if not self.extremes:
            return (
                select(*labelled, func.count().label(ROW_COUNT), *sums)
                .where(condition)
                .group_by(*keys)
            )
        # One pass: the window gives each row its group's extreme, the outer GROUP BY counts
        # the rows holding it.
        window_columns = []
        for i, e in enumerate(self.extremes):
            fn = func.max if e.is_max else func.min
            window_columns.append(
                fn(self.source.c[e.source]).over(partition_by=keys).label(f"w{i}")
            )
        sources = dict.fromkeys([s.source for s in self.sums] + [e.source for e in self.extremes])
        inner = (
            select(*labelled, *(self.source.c[c].label(f"v_{c}") for c in sources), *window_columns)
            .where(condition)
            .subquery("g")
        )
        outer_keys = [inner.c[k.name] for k in self.keys]
        columns: list[Any] = [*outer_keys, func.count().label(ROW_COUNT)]
        columns += [
            cast(func.coalesce(func.sum(inner.c[f"v_{s.source}"]), 0), BigInteger).label(s.column)
            for s in self.sums
        ]
        for i, e in enumerate(self.extremes):
            value = inner.c[f"v_{e.source}"]
            fn = func.max if e.is_max else func.min
            columns.append(fn(value).label(e.column))
            at = func.sum(case((value == inner.c[f"w{i}"], 1), else_=0))
            columns.append(cast(at, BigInteger).label(e.count_column))
        return select(*columns).group_by(*outer_keys)

    def distinct_groups(self, where: ColumnElement[bool] | None) -> Select[Any]:
        """The groups of the source rows matching ``where`` (filter not applied: a write can
        move a row into or out of the filter without changing its group)."""
        keys = self.key_expressions()
        stmt = select(*(e.label(k.name) for e, k in zip(keys, self.keys, strict=True)))
        if where is not None:
            stmt = stmt.where(where)
        return stmt.group_by(*keys)

    def summarize(self, *by: str, **labels: str) -> Select[Any]:
        """Re-aggregate the rollup table by the key columns ``by`` (none: one total row).

        Every measure appears under its name (averages computed from sum and count); add
        ``.where(rollup.table.c.month >= '2026-01')`` and the like to narrow it.
        """
        t = self.table
        unknown = [b for b in by if b not in {k.name for k in self.keys}]
        if unknown:
            raise ConfigurationError(f"{self.name!r} has no key column(s) {unknown}")
        columns: list[Any] = [t.c[b] for b in by]
        for m in self.measures:
            if m.kind == "count":
                columns.append(cast(func.coalesce(func.sum(t.c[ROW_COUNT]), 0), BigInteger))
            elif m.kind == "sum":
                columns.append(cast(func.coalesce(func.sum(t.c[m.name]), 0), BigInteger))
            elif m.kind == "avg":
                total = func.sum(t.c[m.storage[0]])
                rows = func.nullif(func.sum(t.c[ROW_COUNT]), 0)
                columns.append(cast(total, Numeric(30, 6)) / cast(rows, Numeric(30, 6)))
            else:
                fn = func.max if m.kind == "max" else func.min
                columns.append(fn(t.c[m.name]))
            columns[-1] = columns[-1].label(labels.get(m.name, m.name))
        return select(*columns).group_by(*(t.c[b] for b in by)).order_by(*(t.c[b] for b in by))


def _equals(wanted: Any, value: Any) -> bool:
    return bool(value == wanted or (isinstance(value, enum.Enum) and value.value == wanted))


def _is_integer(type_: Any) -> bool:
    if isinstance(type_, Boolean):
        return False
    if isinstance(type_, Integer):
        return True
    impl = getattr(type_, "impl", None)
    return impl is not None and _is_integer(impl)
