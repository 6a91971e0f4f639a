"""In-process stamps (embedded mode, and the fake for tests): bounded, never stale."""

from __future__ import annotations

import itertools
import uuid
from collections import OrderedDict
from collections.abc import Collection, Sequence

from lockstep.cache.stores.base import StampSnapshot


class MemoryStampStore:
    """Stamps in a bounded dict. Every bump takes a new value from one counter, so a value
    is never reused; an evicted key comes back with a fresh value (a miss, never a stale hit).
    """

    def __init__(self, max_keys: int = 200_000) -> None:
        self.generation = uuid.uuid4().hex[:10]
        self._counter = itertools.count(1)
        self._stamps: OrderedDict[str, str] = OrderedDict()
        self._max_keys = max_keys

    def _fresh(self) -> str:
        return str(next(self._counter))

    def read_now(self, keys: Sequence[str]) -> StampSnapshot:
        stamps = self._stamps
        values = []
        for key in keys:
            value = stamps.get(key)
            if value is None:
                value = stamps[key] = self._fresh()
                self._trim()
            values.append(value)
        return StampSnapshot(self.generation, tuple(values))

    async def read(self, keys: Sequence[str], *, authoritative: bool = False) -> StampSnapshot:
        return self.read_now(keys)  # this store is the authority: nothing to skip

    def bump_now(self, keys: Collection[str]) -> None:
        stamps = self._stamps
        for key in keys:
            stamps.pop(key, None)
            stamps[key] = self._fresh()
        self._trim()

    async def bump(self, keys: Collection[str], change_id: int | None = None) -> None:
        # Nothing to mark: a change set is applied here by this call itself.
        self.bump_now(keys)

    def _trim(self) -> None:
        while len(self._stamps) > self._max_keys:
            self._stamps.popitem(last=False)

    def __len__(self) -> int:
        return len(self._stamps)
