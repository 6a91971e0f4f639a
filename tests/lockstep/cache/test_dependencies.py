"""Which stamps a change bumps: pure functions, no servers."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table

from lockstep.cache import Row, Scope, bumps, stamp_keys
from lockstep.cache import Table as TableDep
from lockstep.cache.dependencies import MAX_ROW_BUMPS_PER_TABLE, check_dependencies
from lockstep.changes import Tracking
from lockstep.exceptions import ConfigurationError
from lockstep.types import ALL_TABLES, Change, ChangeSet

metadata = MetaData()
Table("cases", metadata, Column("id", Integer, primary_key=True), Column("org", Integer))
Table(
    "txns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org", Integer),
    Column("case_id", ForeignKey("cases.id")),
    Column("note", Integer),
)
tracking = Tracking(metadata, scopes=["org", "case_id"])


def _set(*changes: Change) -> ChangeSet:
    return ChangeSet(id=1, txid=1, changes=changes)


def _hits(dep: Row | Scope | TableDep, changeset: ChangeSet) -> bool:
    return bool(set(dep.stamp_keys()) & bumps(changeset))


def test_a_row_change_reaches_its_row_scopes_and_table_only() -> None:
    change = Change(
        "txns", "update", ("5",), {"case_id": frozenset({"7"}), "org": frozenset({"1"})}
    )
    cs = _set(change)
    assert _hits(Row("txns", 5), cs)
    assert _hits(Scope("txns", case_id=7), cs)
    assert _hits(TableDep("txns"), cs)
    assert not _hits(Row("txns", 6), cs)
    assert not _hits(Scope("txns", case_id=8), cs)  # a write to case 7 never evicts case 8
    assert not _hits(Row("cases", 5), cs)


def test_a_move_between_scopes_reaches_both() -> None:
    cs = _set(
        Change(
            "txns", "update", ("5",), {"case_id": frozenset({"7", "8"}), "org": frozenset({"1"})}
        )
    )
    assert _hits(Scope("txns", case_id=7), cs)
    assert _hits(Scope("txns", case_id=8), cs)


def test_keyless_insert_with_scopes_reaches_rows_but_not_other_scopes() -> None:
    cs = _set(
        Change("txns", "insert", None, {"case_id": frozenset({"7"}), "org": frozenset({"1"})})
    )
    assert _hits(Row("txns", 999), cs)  # a cached "not found" must not survive
    assert _hits(Scope("txns", case_id=7), cs)
    assert not _hits(Scope("txns", case_id=8), cs)


def test_unnamed_rows_reach_everything_on_the_table() -> None:
    cs = _set(Change("txns", "update", None, {}, scopes_complete=False))
    assert _hits(Row("txns", 1), cs)
    assert _hits(Scope("txns", case_id=8), cs)
    assert not _hits(Row("cases", 1), cs)


def test_unattributed_sql_reaches_every_dependency() -> None:
    cs = _set(Change(ALL_TABLES, "update", None, {}, scopes_complete=False))
    assert _hits(Row("cases", 1), cs)
    assert _hits(Scope("txns", case_id=1), cs)


def test_huge_batches_stay_bounded_but_still_invalidate() -> None:
    changes = [
        Change("txns", "insert", (str(i),), {"case_id": frozenset({"7"}), "org": frozenset({"1"})})
        for i in range(MAX_ROW_BUMPS_PER_TABLE + 5)
    ]
    keys = bumps(_set(*changes))
    assert len(keys) < 10
    assert _hits(Row("txns", 3), _set(*changes))


def test_canonical_values_make_types_agree() -> None:
    assert stamp_keys([Scope("txns", case_id=7)]) == stamp_keys([Scope("txns", case_id="7")])


def test_dependencies_the_feed_cannot_bump_are_refused() -> None:
    check_dependencies([Row("txns", 1), Scope("txns", case_id=1), TableDep("cases")], tracking)
    with pytest.raises(ConfigurationError, match="not a scope column"):
        check_dependencies([Scope("txns", note=1)], tracking)
    with pytest.raises(ConfigurationError, match="does not track"):
        check_dependencies([TableDep("nope")], tracking)
    with pytest.raises(ConfigurationError, match="key value"):
        check_dependencies([Row("txns", 1, 2)], tracking)
