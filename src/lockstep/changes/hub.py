"""In-process fan-out of committed change sets, and the wake-up for feed followers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from lockstep.types import ChangeSet

ChangeListener = Callable[[ChangeSet], Awaitable[None]]

log = structlog.get_logger("lockstep.changes")


class ChangeHub:
    """Delivers each committed :class:`ChangeSet` of this process to every listener, in order.

    ``publish`` awaits the listeners one by one; a failing listener is logged and the others
    still run (the change log lets it catch up), then the first error is raised again.
    """

    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []
        self._changed = asyncio.Event()
        self.last_id = 0

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        """Add ``listener``; returns the function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def publish(self, changeset: ChangeSet) -> None:
        self.last_id = max(self.last_id, changeset.id)
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        first_error: BaseException | None = None
        for listener in list(self._listeners):
            try:
                await listener(changeset)
            except Exception as exc:  # one broken consumer must not stop the rest
                log.exception("change_listener_failed", changeset=changeset.id)
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def next_publish(self) -> asyncio.Event:
        """An event set by the next publish. Take it *before* reading the log, then wait on
        it, so a commit landing between the read and the wait is not missed."""
        return self._changed

    @staticmethod
    async def wait(event: asyncio.Event, within: float) -> bool:
        """Wait until ``event`` is set (True) or ``within`` seconds pass (False)."""
        try:
            async with asyncio.timeout(within):
                await event.wait()
        except TimeoutError:
            return False
        return True
