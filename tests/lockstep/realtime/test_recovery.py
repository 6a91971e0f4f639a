"""What a (re)subscribing client is owed, and what a subscriber does with each publication:
plain functions, no server."""

from __future__ import annotations

from lockstep.realtime.protocol import Publication
from lockstep.realtime.recovery import admit, recover


def pubs(*offsets: int) -> list[Publication]:
    return [Publication("c", b"1", o, "e") for o in offsets]


def test_exactly_the_missed_publications_in_order() -> None:
    outcome = recover(3, "e", 6, "e", pubs(4, 5, 6))
    assert outcome.recovered
    assert [p.offset for p in outcome.publications] == [4, 5, 6]
    assert outcome.offset == 3  # the publications carry the client to the top


def test_nothing_missed_is_recovered_with_nothing() -> None:
    outcome = recover(6, "e", 6, "e", [])
    assert outcome.recovered
    assert outcome.publications == ()


def test_cannot_recover_across_epochs_gaps_or_rewinds() -> None:
    for offset, epoch, top, history in [
        (3, "old", 6, pubs(4, 5, 6)),  # history was lost: another epoch
        (3, "e", 6, pubs(5, 6)),  # trimmed: 4 is gone
        (3, "e", 6, pubs(4, 6)),  # a hole
        (9, "e", 6, []),  # beyond the top: the stream went back
    ]:
        outcome = recover(offset, epoch, top, "e", history)
        assert not outcome.recovered
        assert outcome.publications == ()
        assert (outcome.offset, outcome.epoch) == (top, "e")


def test_publications_after_the_top_read_are_left_to_the_live_stream() -> None:
    outcome = recover(3, "e", 5, "e", pubs(4, 5, 6, 7))
    assert [p.offset for p in outcome.publications] == [4, 5]


def test_an_empty_epoch_is_a_client_that_subscribed_before_any_publication() -> None:
    assert recover(0, "", 2, "e", pubs(1, 2)).recovered


def test_admit() -> None:
    assert admit(5, 0) == "send"  # a volatile channel: no offsets
    assert admit(5, 4) == "drop"
    assert admit(5, 5) == "drop"
    assert admit(5, 6) == "send"
    assert admit(5, 8) == "gap"
