"""The pure decisions of a push: which mutations of a batch are replays, where a gap is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.offline import MutationGap, plan


def test_replays_then_applies() -> None:
    assert [(s.mutation_id, s.action) for s in plan(3, [2, 3, 4, 5])] == [
        (2, "replay"),
        (3, "replay"),
        (4, "apply"),
        (5, "apply"),
    ]


def test_a_gap_names_the_expected_id() -> None:
    with pytest.raises(MutationGap) as caught:
        plan(3, [5, 6])
    assert caught.value.expected == 4
    assert caught.value.details == {"expected": 4}


def test_ids_must_be_consecutive() -> None:
    with pytest.raises(ValueError, match="consecutive"):
        plan(0, [1, 3])


@given(st.integers(0, 50), st.integers(1, 60), st.integers(1, 20))
def test_every_id_is_applied_once_whatever_is_resent(last: int, first: int, size: int) -> None:
    ids = list(range(first, first + size))
    if first > last + 1:
        with pytest.raises(MutationGap):
            plan(last, ids)
        return
    steps = plan(last, ids)
    assert [s.mutation_id for s in steps if s.action == "replay"] == [i for i in ids if i <= last]
    assert [s.mutation_id for s in steps if s.action == "apply"] == [i for i in ids if i > last]
