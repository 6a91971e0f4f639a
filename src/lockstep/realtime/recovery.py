"""What a (re)subscribing client is owed, and what to do with each live publication.

Plain functions over values, unit-tested without servers. The rules:

* A channel's stream is ``(epoch, top)``: offsets 1..top, gap-free, in commit order. The
  epoch changes whenever its history is lost, so an old position can never be matched
  against a new stream.
* :func:`recover`: a client at ``(offset, epoch)`` gets exactly the publications
  ``offset+1 .. top`` in order with ``recovered=True`` when the epoch matches and the kept
  history holds every one of them (at most ``limit``); otherwise none, ``recovered=False``
  and the current position, so it refetches (or error 112 when it asked for that).
* :func:`admit`: a subscriber at ``position`` drops a publication it already has, takes the
  next one, and reports a gap for anything further (the caller then fills the gap from
  history, or makes the client resubscribe).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lockstep.realtime.protocol import Publication


@dataclass(frozen=True, slots=True)
class Recovery:
    """The answer to a subscribe: publications to include, whether that is everything the
    client missed, and the position to tell it (its own offset when recovered: the included
    publications carry it to the top, as the protocol expects)."""

    publications: tuple[Publication, ...]
    recovered: bool
    offset: int
    epoch: str


def recover(
    offset: int,
    epoch: str,
    top: int,
    current_epoch: str,
    history: Sequence[Publication],
) -> Recovery:
    """The recovery of a client at ``(offset, epoch)`` from ``history`` (the kept
    publications after ``offset``, ascending, read after ``top``)."""
    needed = [p for p in history if offset < p.offset <= top]
    complete = (
        (not epoch or epoch == current_epoch)
        and offset <= top
        and len(needed) == top - offset
        and all(p.offset == offset + 1 + i for i, p in enumerate(needed))
    )
    if not complete:
        return Recovery((), False, top, current_epoch)
    return Recovery(tuple(needed), True, offset, current_epoch)


Admission = Literal["drop", "send", "gap"]


def admit(position: int, offset: int) -> Admission:
    """What a subscriber at ``position`` does with a publication at ``offset`` (0: the
    channel keeps no history, always sent)."""
    if offset == 0:
        return "send"
    if offset <= position:
        return "drop"
    if offset == position + 1:
        return "send"
    return "gap"
