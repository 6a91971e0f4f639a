"""Columns: a batch of rows held a column at a time; every list as long as the batch."""

from __future__ import annotations

import pytest

from lockstep.db import Columns


def test_rows_and_columns_are_the_same_batch() -> None:
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    batch = Columns.of_rows(rows)
    assert (len(batch), batch.names, batch["a"]) == (2, ("a", "b"), [1, 2])
    assert list(batch.rows()) == rows
    assert list(batch.tuples(["b", "a"])) == [("x", 1), ("y", 2)]
    assert list(batch.tuples([])) == [(), ()]


def test_fill_extend_and_where() -> None:
    batch = Columns({"a": [1, 2, 3]})
    batch.fill("case", 7)
    assert batch["case"] == [7, 7, 7]
    batch.extend(Columns({"a": [4], "case": [8]}))
    assert (len(batch), batch["a"], batch["case"]) == (4, [1, 2, 3, 4], [7, 7, 7, 8])
    kept = batch.where([True, False, False, True])
    assert (len(kept), kept["a"]) == (2, [1, 4])
    assert len(batch) == 4  # where() leaves the batch as it was


def test_a_batch_with_no_columns_still_has_rows() -> None:
    batch = Columns({}, 3)
    batch.fill("x", None)
    assert batch["x"] == [None, None, None]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Columns({"a": [1, 2], "b": [1]}), "columns of different lengths"),
        (lambda: Columns({"a": [1]}, 2), "2 rows announced, the columns hold 1"),
        (lambda: Columns({"a": [1]}).__setitem__("b", [1, 2]), "has 2 values for 1 rows"),
        (lambda: Columns({"a": [1]}).extend(Columns({"b": [1]})), "cannot extend columns"),
    ],
    ids=["ragged", "announced", "setitem", "extend"],
)
def test_mismatched_lengths_and_names_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_a_row_without_a_column_of_the_first_is_named() -> None:
    with pytest.raises(KeyError, match="'b'"):
        Columns.of_rows([{"a": 1, "b": 2}, {"a": 3}])
