"""Offline sync: the ElectricSQL Shape HTTP API for reads, idempotent pushes for writes.

``Offline(database, changes, shapes=[...])`` serves ``GET /v1/shape`` from lockstep's own
write path (no Electric server, SQLite or PostgreSQL), so ``@electric-sql/client`` and
TanStack DB's Electric collection consume it unchanged. See docs/offline.md.
"""

from lockstep.offline.filters import Filter, FilterError, equal_to
from lockstep.offline.server import SHAPE_PATH, Offline
from lockstep.offline.shapes import Shape
from lockstep.offline.tables import OFFLINE_TABLES, ensure_offline_tables

__all__ = [
    "OFFLINE_TABLES",
    "SHAPE_PATH",
    "Filter",
    "FilterError",
    "Offline",
    "Shape",
    "ensure_offline_tables",
    "equal_to",
]
