"""The rollups of an application, as one object: install once, verify, repair, rebuild.

    aggregates = Aggregates([monthly, per_case])
    aggregates.install(database)               # maintained by every writer() from now on
    report = await aggregates.verify(database) # [Verification(...), ...]

Installing is per :class:`~lockstep.db.Database` and idempotent; the same rollup cannot be
maintained twice on one database (that would count every row twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lockstep.aggregates.maintenance import Maintenance
from lockstep.aggregates.rollup import Rollup
from lockstep.aggregates.verification import (
    CHUNK_ROWS,
    Progress,
    Rewrite,
    Verification,
    rebuild,
    repair,
    verify,
)
from lockstep.db import Database
from lockstep.exceptions import ConfigurationError

_INSTALLED_BY = "_lockstep_aggregates"


class Aggregates:
    """A set of rollups with unique names."""

    def __init__(self, rollups: Iterable[Rollup]) -> None:
        self.rollups = tuple(rollups)
        names = [r.name for r in self.rollups]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"rollup names must be unique: {names}")
        self._by_name = {r.name: r for r in self.rollups}

    def __iter__(self) -> Iterator[Rollup]:
        return iter(self.rollups)

    def __getitem__(self, name: str) -> Rollup:
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigurationError(
                f"no rollup named {name!r}; known: {', '.join(self._by_name)}"
            ) from None

    def select(self, names: Iterable[str] | None) -> list[Rollup]:
        """The named rollups (all when ``names`` is None or empty)."""
        wanted = list(names or ())
        return [self[n] for n in wanted] if wanted else list(self.rollups)

    def install(self, database: Database) -> None:
        """Maintain every rollup in ``database``'s write transactions (idempotent)."""
        cls = database.session_class
        installed: list[Aggregates] = getattr(cls, _INSTALLED_BY, [])
        if any(a is self for a in installed):
            return
        Maintenance(self.rollups).install(database)
        setattr(cls, _INSTALLED_BY, [*installed, self])

    async def verify(
        self,
        database: Database,
        names: Iterable[str] | None = None,
        *,
        progress: Progress | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> list[Verification]:
        """Compare each rollup with its GROUP BY; see :func:`~.verification.verify`."""
        return [
            await verify(database, r, progress=progress, chunk_rows=chunk_rows)
            for r in self.select(names)
        ]

    async def repair(
        self,
        database: Database,
        names: Iterable[str] | None = None,
        *,
        progress: Progress | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> list[tuple[Verification, Rewrite]]:
        """Recompute the groups that differ; see :func:`~.verification.repair`."""
        return [
            await repair(database, r, progress=progress, chunk_rows=chunk_rows)
            for r in self.select(names)
        ]

    async def rebuild(
        self,
        database: Database,
        names: Iterable[str] | None = None,
        *,
        progress: Progress | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> list[Rewrite]:
        """Recompute every group, online; see :func:`~.verification.rebuild`."""
        return [
            await rebuild(database, r, progress=progress, chunk_rows=chunk_rows)
            for r in self.select(names)
        ]
