"""Writing group deltas and recomputations to a rollup table, on the writer's connection.

One call handles one rollup for one transaction:

1. Every touched group (a delta, or a group to recompute) gets exactly one upsert, all in one
   statement, in :func:`~lockstep.aggregates.delta.sort_key` order. Concurrent writers
   therefore lock rollup rows in the same order and cannot deadlock on them. The upsert adds
   counts and sums atomically (``row_count = row_count + excluded.row_count``), so it is
   correct under PostgreSQL's READ COMMITTED without any prior read.
2. The upsert returns each row; :func:`~lockstep.aggregates.delta.settle` says which groups
   need their extreme counts lowered, which are empty (deleted) and which must be
   recomputed from the source.
3. A recompute runs *after* its row is locked by step 1: on PostgreSQL every other writer of
   that group either committed before (its rows are visible to the recompute's snapshot) or
   waits for this transaction and applies its own delta afterwards. So the recomputed row is
   exact without locking the source table.

The functions are synchronous: they run inside SQLAlchemy session events (the writer's
greenlet) and inside ``run_sync`` for verify/repair/rebuild.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from lockstep.aggregates.delta import Deltas, GroupDelta, Settled, settle, sort_key
from lockstep.aggregates.keys import plain
from lockstep.aggregates.rollup import ROW_COUNT, Rollup
from lockstep.types import Change, canonical

Group = tuple[Any, ...]

RECOMPUTE_BATCH = 200
"""Groups recomputed per GROUP BY statement (one OR of sargable group predicates)."""


class AllGroups:
    """Marker: every group of the rollup must be recomputed (a bulk write nobody could name)."""

    def __repr__(self) -> str:
        return "ALL_GROUPS"


ALL_GROUPS = AllGroups()

Recompute = set[Group] | AllGroups


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def group_of_row(rollup: Rollup, row: Any) -> Group:
    """The group of a row read from the rollup table or from :meth:`Rollup.grouped`."""
    mapping = row._mapping
    return tuple(plain(mapping[k.name]) for k in rollup.keys)


def existing_groups(connection: Connection, rollup: Rollup) -> set[Group]:
    rows = connection.execute(select(*rollup.key_columns))
    return {group_of_row(rollup, r) for r in rows}


def source_groups(connection: Connection, rollup: Rollup) -> set[Group]:
    rows = connection.execute(rollup.distinct_groups(rollup.filter_clause()))
    return {group_of_row(rollup, r) for r in rows}


def apply(
    connection: Connection,
    rollup: Rollup,
    deltas: Deltas,
    recompute: Recompute,
    scope: ColumnElement[bool] | None = None,
) -> list[Change]:
    """Write ``deltas`` and recompute the ``recompute`` groups of ``rollup``; returns the row
    changes made (for the change feed). ``scope``, when given, selects source rows of exactly
    the recomputed groups: they are then recomputed with one GROUP BY over it."""
    if isinstance(recompute, AllGroups):
        recompute = existing_groups(connection, rollup) | source_groups(connection, rollup)
        scope = true()
    touched = {g for g, d in deltas.items() if not d.empty} | recompute
    if not touched:
        return []
    ordered = sorted(touched, key=sort_key)
    if not recompute and all(_only_adds(deltas[g]) for g in ordered):
        # The common write: rows added, none removed. Nothing can empty a group or lose an
        # extreme, so the upsert is all there is (no RETURNING to read back).
        _upsert(connection, rollup, ordered, deltas, returning=False)
        return [_change(rollup, g, "update") for g in ordered]
    stored = _upsert(connection, rollup, ordered, deltas, returning=True)
    fixes: dict[Group, dict[str, int]] = {}
    redo: list[Group] = []
    gone: list[Group] = []
    for group in ordered:
        if group in recompute:
            redo.append(group)
            continue
        outcome: Settled = settle(stored[group], deltas[group], rollup.extremes)
        if outcome.action == "recompute":
            redo.append(group)
        elif outcome.action == "delete":
            gone.append(group)
        elif outcome.counts:
            fixes[group] = {**_counts(rollup, stored[group]), **outcome.counts}
    if fixes:
        _update(connection, rollup, [(g, fixes[g]) for g in ordered if g in fixes])
    if redo:
        in_scope = scope if scope is not None and set(redo) <= recompute else None
        gone += recompute_groups(connection, rollup, redo, in_scope)
    if gone:
        _delete(connection, rollup, gone)
    removed = set(gone)
    return [_change(rollup, g, "delete" if g in removed else "update") for g in ordered]


def recompute_groups(
    connection: Connection,
    rollup: Rollup,
    groups: Sequence[Group],
    scope: ColumnElement[bool] | None = None,
) -> list[Group]:
    """Rewrite ``groups`` (already locked) from the source; returns the empty ones (to
    delete). With ``scope`` one GROUP BY over it serves every group, else the groups are
    matched in batches."""
    batches = [groups] if scope is not None else list(chunks(groups, RECOMPUTE_BATCH))
    empty: list[Group] = []
    for batch in batches:
        where = scope if scope is not None else rollup.match_any(batch)
        found: dict[Group, dict[str, Any]] = {}
        for row in connection.execute(rollup.grouped(where)):
            found[group_of_row(rollup, row)] = dict(row._mapping)
        rows = [(g, _values(rollup, found[g])) for g in batch if g in found]
        if rows:
            _update(connection, rollup, rows)
        empty += [g for g in batch if g not in found]
    return empty


def _only_adds(delta: GroupDelta) -> bool:
    return delta.rows > 0 and all(r is None for r in delta.removed)


def _statements(rollup: Rollup, dialect: str) -> dict[Any, Any]:
    """Statements of one rollup, built once per dialect: building them (and their cache
    keys) costs more than executing them."""
    cache: dict[str, dict[Any, Any]] = rollup.__dict__.setdefault("_statements", {})
    return cache.setdefault(dialect, {})


def _upsert_statement(rollup: Rollup, dialect: str, returning: bool) -> Any:
    cache = _statements(rollup, dialect)
    key = ("upsert", returning)
    if key in cache:
        return cache[key]
    t = rollup.table
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(t)
    ex = insert.excluded
    set_: dict[str, Any] = {ROW_COUNT: t.c[ROW_COUNT] + ex[ROW_COUNT]}
    for s in rollup.sums:
        set_[s.column] = t.c[s.column] + ex[s.column]
    for e in rollup.extremes:
        old, new = t.c[e.column], ex[e.column]
        old_n, new_n = t.c[e.count_column], ex[e.count_column]
        better = (new > old) if e.is_max else (new < old)
        wins = or_(old.is_(None), better)
        set_[e.column] = case((new.is_(None), old), (wins, new), else_=old)
        set_[e.count_column] = case(
            (new.is_(None), old_n), (wins, new_n), (new == old, old_n + new_n), else_=old_n
        )
    stmt = insert.on_conflict_do_update(index_elements=rollup.key_columns, set_=set_)
    if returning:
        returned = [*rollup.key_columns, t.c[ROW_COUNT]]
        for e in rollup.extremes:
            returned += [t.c[e.column], t.c[e.count_column]]
        stmt = stmt.returning(*returned, sort_by_parameter_order=True)  # type: ignore[assignment]
    cache[key] = stmt
    return stmt


def _upsert(
    connection: Connection,
    rollup: Rollup,
    ordered: Sequence[Group],
    deltas: Deltas,
    *,
    returning: bool,
) -> dict[Group, dict[str, Any]]:
    stmt = _upsert_statement(rollup, connection.dialect.name, returning)
    n_sums, n_ext = len(rollup.sums), len(rollup.extremes)
    params = []
    for group in ordered:
        delta = deltas.get(group) or GroupDelta(group, n_sums, n_ext)
        row: dict[str, Any] = {k.name: v for k, v in zip(rollup.keys, delta.key, strict=True)}
        row[ROW_COUNT] = delta.rows
        for s, value in zip(rollup.sums, delta.sums, strict=True):
            row[s.column] = value
        for e, added in zip(rollup.extremes, delta.added, strict=True):
            row[e.column] = added[0] if added is not None else None
            row[e.count_column] = added[1] if added is not None else 0
        params.append(row)
    if not returning:
        connection.execute(stmt, params[0] if len(params) == 1 else params)
        return {}
    out: dict[Group, dict[str, Any]] = {}
    for group, result_row in zip(ordered, connection.execute(stmt, params), strict=True):
        out[group] = dict(result_row._mapping)
    return out


def _counts(rollup: Rollup, stored: dict[str, Any]) -> dict[str, Any]:
    return {e.count_column: stored[e.count_column] for e in rollup.extremes}


def _values(rollup: Rollup, row: dict[str, Any]) -> dict[str, Any]:
    keys = {k.name for k in rollup.keys}
    return {c: v for c, v in row.items() if c not in keys}


def _where_keys(rollup: Rollup) -> Any:
    return and_(*(c == bindparam(f"k_{c.name}") for c in rollup.key_columns))


def _update(
    connection: Connection, rollup: Rollup, rows: Sequence[tuple[Group, dict[str, Any]]]
) -> None:
    # Statements are grouped by the set of columns they write.
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for group, values in rows:
        params = {f"k_{k.name}": v for k, v in zip(rollup.keys, group, strict=True)}
        params.update({f"v_{c}": v for c, v in values.items()})
        by_columns.setdefault(tuple(sorted(values)), []).append(params)
    cache = _statements(rollup, connection.dialect.name)
    for columns, params_list in by_columns.items():
        stmt = cache.get(("update", columns))
        if stmt is None:
            stmt = cache[("update", columns)] = (
                update(rollup.table)
                .where(_where_keys(rollup))
                .values({c: bindparam(f"v_{c}") for c in columns})
            )
        connection.execute(stmt, params_list)


def _delete(connection: Connection, rollup: Rollup, groups: Sequence[Group]) -> None:
    params = [{f"k_{k.name}": v for k, v in zip(rollup.keys, g, strict=True)} for g in groups]
    cache = _statements(rollup, connection.dialect.name)
    stmt = cache.get("delete")
    if stmt is None:
        stmt = cache["delete"] = delete(rollup.table).where(_where_keys(rollup))
    connection.execute(stmt, params)


def _change(rollup: Rollup, group: Group, op: str) -> Change:
    values = [canonical(v) for v in group]
    return Change(
        table=rollup.name,
        op="delete" if op == "delete" else "update",
        key=tuple(values),
        scopes={k.name: frozenset([v]) for k, v in zip(rollup.keys, values, strict=True)},
        columns=None if op == "delete" else rollup.value_columns,
    )
