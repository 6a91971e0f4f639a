"""Read-your-writes tokens carried through one request.

A write records the id of every change set it committed; the HTTP layer returns the highest
as a response header. A later request that sends it back asks every read to reflect at least
that change set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestConsistency:
    """The per-request holder: ``min_change`` asked for by the client, ``committed`` by us
    (change ids), ``txids`` the database transaction ids of those commits."""

    min_change: int = 0
    committed: list[int] = field(default_factory=list)
    txids: list[int] = field(default_factory=list)

    @property
    def token(self) -> int | None:
        return max(self.committed) if self.committed else None


_current: ContextVar[RequestConsistency | None] = ContextVar("lockstep_consistency", default=None)


@contextlib.contextmanager
def consistency_scope(min_change: int = 0) -> Iterator[RequestConsistency]:
    """Open a holder for one request (or job); writes inside it record their change ids."""
    holder = RequestConsistency(min_change=min_change)
    reset = _current.set(holder)
    try:
        yield holder
    finally:
        _current.reset(reset)


def current_consistency() -> RequestConsistency | None:
    return _current.get()


def record_commit(change_id: int, txid: int | None = None) -> None:
    holder = _current.get()
    if holder is not None:
        holder.committed.append(change_id)
        if txid is not None:
            holder.txids.append(txid)


def required_change() -> int:
    """The change id the current reader must see (0: no requirement)."""
    holder = _current.get()
    if holder is None:
        return 0
    return max([holder.min_change, *holder.committed])
