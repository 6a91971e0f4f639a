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

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CTE

from lockstep.aggregates.delta import Deltas, GroupDelta, Settled, settle, sort_key
from lockstep.aggregates.keys import plain
from lockstep.aggregates.rollup import ROW_COUNT, Rollup
from lockstep.changes import Prelude, run_prelude
from lockstep.db.batch import DriverStatement, driver_statement, execute_batch
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
    added = _additions(deltas, recompute)
    if added is not None:
        return add_together(connection, [(rollup, added, deltas)])
    ordered = sorted(touched, key=sort_key)
    stored = _upsert(connection, rollup, ordered, deltas)
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


Defer = Callable[[Prelude], bool]
"""Offers upserts to the statement that writes the change-log row; False: run them now."""


def apply_all(
    connection: Connection,
    work: Sequence[tuple[Rollup, Deltas, Recompute]],
    *,
    defer: Defer | None = None,
) -> list[Change]:
    """:func:`apply` for each rollup of one transaction, in the order given: the lock order,
    so callers pass the rollups sorted by name. Consecutive rollups that only gain rows (the
    common write) are upserted together by :func:`add_together`; a rollup that needs more
    is applied on its own between them, so the order holds across rollups too. The last
    such run may be ``defer``-red to the log row's statement: nothing is written after it."""
    changes: list[Change] = []
    run: list[Additions] = []
    for rollup, deltas, recompute in work:
        added = _additions(deltas, recompute)
        if added is not None:
            if added:
                run.append((rollup, added, deltas))
            continue
        changes += add_together(connection, run)
        run = []
        changes += apply(connection, rollup, deltas, recompute)
    return changes + add_together(connection, run, defer=defer)


Additions = tuple[Rollup, Sequence[Group], Deltas]
"""A rollup, its touched groups in lock order, and their deltas (rows added, none removed)."""


def add_together(
    connection: Connection, run: Sequence[Additions], *, defer: Defer | None = None
) -> list[Change]:
    """Upsert the groups of every rollup in ``run``, rollup after rollup and each in its
    groups' order, in one trip to the database: one driver hand-off on SQLite
    (:func:`~lockstep.db.batch.execute_batch`), one statement on PostgreSQL (see
    :func:`_together`), or none of its own when ``defer`` takes it into the statement that
    writes the change-log row. Nothing can empty a group or lose an extreme when rows are
    only added, so the upserts are all there is: nothing is read back."""
    if not run:
        return []
    if connection.dialect.name == "postgresql":
        params: dict[str, Any] = {}
        for i, (rollup, ordered, deltas) in enumerate(run):
            rows = _upsert_params(rollup, ordered, deltas)
            for column in rollup.table.c:
                params[f"r{i}_{column.name}"] = [row[column.name] for row in rows]
        ctes, cache = _together(tuple(r for r, _, _ in run))
        prelude = Prelude(ctes, params, cache)
        if defer is None or not defer(prelude):
            run_prelude(connection, prelude)
    else:
        batch = []
        for rollup, ordered, deltas in run:
            statement = _driver_upsert(connection, rollup)
            rows = _upsert_params(rollup, ordered, deltas)
            batch.append((statement, [statement.row(row) for row in rows]))
        execute_batch(connection, batch)
    return [_change(rollup, g, "update") for rollup, ordered, _ in run for g in ordered]


def _additions(deltas: Deltas, recompute: Recompute) -> list[Group] | None:
    """The touched groups in lock order when the transaction only added rows to them (and
    has nothing to recompute); None when the groups need :func:`apply`'s full treatment."""
    if recompute:
        return None
    touched = [g for g, d in deltas.items() if not d.empty]
    for group in touched:
        delta = deltas[group]
        if delta.rows <= 0 or any(r is not None for r in delta.removed):
            return None
    return sorted(touched, key=sort_key)


def _statements(rollup: Rollup, dialect: str) -> dict[Any, Any]:
    """Statements of one rollup, built once per dialect: building them (and their cache
    keys) costs more than executing them."""
    cache: dict[str, dict[Any, Any]] = rollup.__dict__.setdefault("_statements", {})
    return cache.setdefault(dialect, {})


def _merge(rollup: Rollup, ex: Any) -> dict[str, Any]:
    """The ON CONFLICT assignments that add a group's delta (the ``excluded`` row ``ex``)
    to its stored row."""
    t = rollup.table
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
    return set_


def _upsert_statement(rollup: Rollup, dialect: str, returning: bool) -> Any:
    cache = _statements(rollup, dialect)
    key = ("upsert", returning)
    if key in cache:
        return cache[key]
    t = rollup.table
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(t)
    stmt = insert.on_conflict_do_update(
        index_elements=rollup.key_columns, set_=_merge(rollup, insert.excluded)
    )
    if returning:
        returned = [*rollup.key_columns, t.c[ROW_COUNT]]
        for e in rollup.extremes:
            returned += [t.c[e.column], t.c[e.count_column]]
        stmt = stmt.returning(*returned, sort_by_parameter_order=True)  # type: ignore[assignment]
    cache[key] = stmt
    return stmt


def _driver_upsert(connection: Connection, rollup: Rollup) -> DriverStatement:
    cache = _statements(rollup, connection.dialect.name)
    found = cache.get("driver_upsert")
    if found is None:
        stmt = _upsert_statement(rollup, connection.dialect.name, returning=False)
        found = cache["driver_upsert"] = driver_statement(connection, stmt)
    return found


def _together(rollups: tuple[Rollup, ...]) -> tuple[tuple[CTE, ...], dict[str, Any]]:
    """Data-modifying CTEs upserting into each of ``rollups``, in that order, and the cache
    of statements built around them (PostgreSQL).

    Each rollup's rows arrive as one array per column (``r{i}_{column}``), unnested WITH
    ORDINALITY and inserted in that order, so the statement text does not depend on how many
    groups were touched (one prepared statement per set of rollups). PostgreSQL runs
    data-modifying CTEs in no promised order; each one's source therefore waits on a scalar
    subquery over the previous CTE, which cannot be evaluated before that CTE has run to
    completion. So rollup ``i`` has locked all of its rows before rollup ``i + 1`` locks any:
    the same lock order as one statement per rollup. Whatever runs them gates on the last.
    """
    cache = _statements(rollups[0], "postgresql")
    key = ("together", tuple(r.name for r in rollups))
    found = cache.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    ctes: list[CTE] = []
    for i, rollup in enumerate(rollups):
        t = rollup.table
        names = [c.name for c in t.c]
        arrays = [bindparam(f"r{i}_{c.name}", type_=postgresql.ARRAY(c.type)) for c in t.c]
        rows = func.unnest(*arrays).table_valued(*names, with_ordinality="ord")
        rows = rows.render_derived(name=f"v{i}")
        source = select(*(rows.c[n] for n in names)).order_by(rows.c.ord)
        if ctes:
            done = select(func.count()).select_from(ctes[-1]).scalar_subquery()
            source = source.where(done >= literal_column("0"))
        insert = postgresql.insert(t).from_select(names, source)
        upsert = insert.on_conflict_do_update(
            index_elements=rollup.key_columns, set_=_merge(rollup, insert.excluded)
        )
        ctes.append(upsert.returning(literal_column("1")).cte(f"u{i}"))
    found = cache[key] = (tuple(ctes), {})
    return found


def _upsert_params(
    rollup: Rollup, ordered: Sequence[Group], deltas: Deltas
) -> list[dict[str, Any]]:
    """One row of upsert parameters per group (a group without a delta adds nothing)."""
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
    return params


def _upsert(
    connection: Connection, rollup: Rollup, ordered: Sequence[Group], deltas: Deltas
) -> dict[Group, dict[str, Any]]:
    """Upsert every group in ``ordered`` (in that order) and return the stored rows."""
    stmt = _upsert_statement(rollup, connection.dialect.name, returning=True)
    params = _upsert_params(rollup, ordered, deltas)
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
