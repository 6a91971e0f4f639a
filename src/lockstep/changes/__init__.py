"""The change feed: capture in the writing transaction, a durable log, in-process fan-out.

``Changes.install(database, tracking)`` is all an application does; every write through
``database.writer()`` then lands in the log atomically with its data, and after commit is
published to the hub's listeners (cache invalidation, realtime, ...) before ``writer()``
returns.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lockstep.changes.capture import (
    COMMITTED,
    ChangeCapture,
    committing_changeset,
    defer_to_log,
    record_changes,
)
from lockstep.changes.feed import ChangeFeed, Cursor
from lockstep.changes.hub import ChangeHub, ChangeListener
from lockstep.changes.log import Prelude, run_prelude
from lockstep.changes.revisions import CHANGE_LOG_TABLES, ensure_change_log
from lockstep.changes.tokens import (
    RequestConsistency,
    consistency_scope,
    current_consistency,
    record_commit,
    required_change,
)
from lockstep.changes.tracking import TableSpec, Tracking
from lockstep.db import Database
from lockstep.types import ChangeSet


class Changes:
    """The change feed of one :class:`Database`."""

    def __init__(self, database: Database, tracking: Tracking) -> None:
        self.database = database
        self.tracking = tracking
        self.hub = ChangeHub()
        self.feed = ChangeFeed(database, self.hub)
        ChangeCapture(tracking).install(database)
        database.add_commit_hook(self._after_commit)

    async def _after_commit(self, session: AsyncSession) -> None:
        for changeset in session.info.pop(COMMITTED, []):
            record_commit(changeset.id, changeset.txid)
            await self.hub.publish(changeset)


__all__ = [
    "CHANGE_LOG_TABLES",
    "ChangeCapture",
    "ChangeFeed",
    "ChangeHub",
    "ChangeListener",
    "ChangeSet",
    "Changes",
    "Cursor",
    "Prelude",
    "RequestConsistency",
    "TableSpec",
    "Tracking",
    "committing_changeset",
    "consistency_scope",
    "current_consistency",
    "defer_to_log",
    "ensure_change_log",
    "record_changes",
    "record_commit",
    "required_change",
    "run_prelude",
]
