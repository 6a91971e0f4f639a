"""Offline sync: the ElectricSQL Shape HTTP API for reads, idempotent pushes for writes.

``Offline(database, changes, shapes=[...])`` serves ``GET /v1/shape`` from lockstep's own
write path (no Electric server, SQLite or PostgreSQL), so ``@electric-sql/client`` and
TanStack DB's Electric collection consume it unchanged. See docs/offline.md.
"""

from lockstep.offline.browser import BrowserModule
from lockstep.offline.filters import Filter, FilterError, equal_to
from lockstep.offline.mutations import (
    MutationContext,
    MutationGap,
    Mutations,
    StaleVersion,
    plan,
)
from lockstep.offline.scopes import SCOPES_PATH, ScopeOut, ScopeShape, SyncScope, in_list
from lockstep.offline.server import PUSH_PATH, SHAPE_PATH, Offline
from lockstep.offline.shapes import Shape
from lockstep.offline.tables import OFFLINE_TABLES, ensure_offline_tables

__all__ = [
    "OFFLINE_TABLES",
    "PUSH_PATH",
    "SCOPES_PATH",
    "SHAPE_PATH",
    "BrowserModule",
    "Filter",
    "FilterError",
    "MutationContext",
    "MutationGap",
    "Mutations",
    "Offline",
    "ScopeOut",
    "ScopeShape",
    "Shape",
    "StaleVersion",
    "SyncScope",
    "ensure_offline_tables",
    "equal_to",
    "in_list",
    "plan",
]
