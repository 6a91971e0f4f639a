"""Numbered, frozen revisions of lockstep's own tables, applied from an app's migrations.

lockstep ships tables of its own (the change log, the jobs tables). Each set of them is a
:class:`VersionedTables`: an ordered list of :class:`Revision` steps whose DDL is written
out literally and never changes once released. An application's Alembic migration names the
revision it brings a set to::

    from lockstep import JOBS_TABLES

    def upgrade() -> None:
        JOBS_TABLES.upgrade(op, to=1)        # creates revision 1 exactly as 0.1 did

    def downgrade() -> None:
        JOBS_TABLES.downgrade(op, to=0)      # and drops it again

When a later lockstep ships revision 2, a *new* app migration calls ``upgrade(op, to=2)``;
the old migration keeps creating revision 1, so a database migrated from zero goes through
the same steps as one that was there all along.

Guarantees:

* What ``upgrade(op, to=n)`` creates depends only on ``n``: never on the live table
  definitions, the app's naming convention or its Alembic settings (revisions run on an
  ``Operations`` of their own over the migration's connection, in its transaction).
* The revision a database is at is recorded in ``lockstep_meta`` (``schema.<name>``). A set
  created before revisions were recorded (lockstep 0.1) has its tables but no record: it is
  revision 1, which is exactly what 0.1 created.
* ``upgrade`` to the revision already there does nothing; moving the wrong way (upgrading a
  database past ``to``, downgrading below it) or to a revision this lockstep does not know
  raises :class:`SchemaError` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from lockstep.exceptions import ConfigurationError, SchemaError
from lockstep.schema import registry


@dataclass(frozen=True, slots=True)
class Revision:
    """One step: ``upgrade`` turns revision ``number - 1`` into ``number``, ``downgrade``
    undoes it. Both get an ``Operations`` bound to the migration's connection
    (``ops.get_bind()`` for data)."""

    number: int
    summary: str
    upgrade: Callable[[Operations], None]
    downgrade: Callable[[Operations], None]


class VersionedTables:
    """One set of lockstep's tables and its revisions.

    ``name`` keys the record in ``lockstep_meta``; ``label`` names the set in messages;
    ``symbol`` is the public name an app imports (messages tell it what to write);
    ``marker`` is a table revision 1 creates (its presence without a record means revision
    1); ``metadata`` holds the live tables the code queries, which must equal the latest
    revision (a test compares them) and which an app adds to its autogenerate target.
    """

    def __init__(
        self,
        name: str,
        *,
        label: str,
        symbol: str,
        marker: str,
        metadata: MetaData,
        revisions: Sequence[Revision],
    ) -> None:
        numbers = [r.number for r in revisions]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ConfigurationError(f"{name}: revisions must be numbered 1..n, got {numbers}")
        self.name = name
        self.label = label
        self.symbol = symbol
        self.marker = marker
        self.metadata = metadata
        self.revisions = tuple(revisions)

    @property
    def latest(self) -> int:
        """The revision this code needs (and its live tables describe)."""
        return len(self.revisions)

    @property
    def key(self) -> str:
        return f"schema.{self.name}"

    def __repr__(self) -> str:
        return f"<{self.symbol}: revisions 1..{self.latest}>"

    # -- reading -------------------------------------------------------------------------

    def revision(self, connection: Connection) -> int:
        """The revision ``connection``'s database is at (0: none of these tables)."""
        recorded = registry.read(connection, self.key)
        if recorded is not None:
            return int(recorded)
        return 1 if inspect(connection).has_table(self.marker) else 0

    # -- moving ----------------------------------------------------------------------------

    def upgrade(self, op: Any, *, to: int) -> None:
        """From an Alembic migration's ``upgrade()``: bring these tables to revision ``to``
        (creating them from nothing when absent)."""
        self.upgrade_connection(op.get_bind(), to=to)

    def downgrade(self, op: Any, *, to: int) -> None:
        """From an Alembic migration's ``downgrade()``: take these tables back to revision
        ``to`` (0 drops them)."""
        self.downgrade_connection(op.get_bind(), to=to)

    def ensure(self, connection: Connection) -> None:
        """Bring the tables to the latest revision on a plain connection (tests, or apps
        that build their schema with ``create_all`` instead of migrations)."""
        self.upgrade_connection(connection, to=self.latest)

    def upgrade_connection(self, connection: Connection, *, to: int) -> None:
        self._known(to)
        current = self.revision(connection)
        if current > to:
            raise SchemaError(
                f"lockstep's {self.label} tables are at revision {current}, past {to}: an "
                f"upgrade cannot go back (use {self.symbol}.downgrade)"
            )
        if current == to:
            return
        ops = _operations(connection)
        if not registry.exists(connection):
            registry.create(ops)
        for step in self.revisions[current:to]:
            step.upgrade(ops)
            registry.write(connection, self.key, str(step.number))

    def downgrade_connection(self, connection: Connection, *, to: int) -> None:
        self._known(to)
        current = self.revision(connection)
        if current < to:
            raise SchemaError(
                f"lockstep's {self.label} tables are at revision {current}, below {to}: a "
                f"downgrade cannot go up (use {self.symbol}.upgrade)"
            )
        if current == to:
            return
        ops = _operations(connection)
        if not registry.exists(connection):  # a 0.1 database: its record starts now
            registry.create(ops)
        for step in reversed(self.revisions[to:current]):
            step.downgrade(ops)
            registry.write(connection, self.key, str(step.number - 1))
        if to == 0:
            registry.forget(connection, self.key)

    def _known(self, to: int) -> None:
        if not 0 <= to <= self.latest:
            raise SchemaError(
                f"lockstep's {self.label} tables have revisions 1..{self.latest} in this "
                f"version of lockstep, not {to}: upgrade lockstep to one that ships it"
            )


def _operations(connection: Connection) -> Operations:
    """Alembic operations over ``connection`` that know nothing of the application's
    migration environment: no naming convention, no batch mode. A revision spells out every
    name it creates, so the app's settings cannot change its DDL."""
    return Operations(MigrationContext.configure(connection))


def table_metadata(*sets: VersionedTables) -> MetaData:
    """One MetaData with the live tables of ``sets`` and ``lockstep_meta``: add it to the
    app's autogenerate target (``target_metadata = [Base.metadata, table_metadata(...)]``)
    so ``alembic revision --autogenerate`` neither drops lockstep's tables nor misses a
    change to them."""
    merged = MetaData()
    for metadata in [registry.metadata, *(s.metadata for s in sets)]:
        for table in metadata.sorted_tables:
            table.to_metadata(merged)
    return merged
