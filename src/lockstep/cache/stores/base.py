"""The two small interfaces every cache backend implements."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StampSnapshot:
    """Stamp values read together, plus the store generation they belong to.

    ``values`` line up with the keys asked for. A key the store does not hold (never bumped,
    expired, evicted) gets a fresh value that was never handed out before, so an entry stored
    under an older value can never match again: eviction costs misses, never staleness.
    """

    generation: str
    values: tuple[str, ...]


class StampStore(Protocol):
    """Version stamps: read many at once, bump many at once."""

    async def read(self, keys: Sequence[str], *, authoritative: bool = False) -> StampSnapshot:
        """The current stamps of ``keys``. ``authoritative`` skips any local copy (a mirror)
        and asks the store every process shares: for checks that must see a bump made a
        moment ago by another process (``If-Match`` inside a write transaction)."""
        ...

    async def bump(self, keys: Collection[str], change_id: int | None = None) -> None:
        """Give ``keys`` new values. With ``change_id``, also record that committed change
        set ``change_id`` is applied (read-your-writes tokens and the relay rely on it).
        Without it, nothing is recorded: a bump announced before COMMIT, whose transaction
        may still roll back."""
        ...


class ValueStore(Protocol):
    """A shared (L2) store of serialized values, written only if stamps are unchanged."""

    async def get(self, key: str) -> bytes | None: ...

    async def set_if_current(
        self, key: str, value: bytes, ttl: float, stamp_keys: Sequence[str], snapshot: StampSnapshot
    ) -> bool:
        """Store ``value`` only if every stamp still equals ``snapshot``; True if stored."""
        ...

    async def delete(self, key: str) -> None: ...
