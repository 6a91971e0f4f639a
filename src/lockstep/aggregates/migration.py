"""A rollup's migration, written out: its table's DDL and its first fill, frozen.

A migration must create tomorrow what it created today. One that called
``create_rollups(op, *AGGREGATES)`` created whatever the application's rollups were *when it
ran*: adding a rollup changed what an old migration creates on a fresh database, while
existing databases never got the new table. So a rollup gets a migration of its own,
written as literal code::

    migration = rollup_migration(monthly)
    migration.upgrade      # lines: op.create_table(...) + the fill, one SQL text per backend
    migration.downgrade    # lines: op.drop_table(...)

``lockstep migration rollup NAME`` writes such a file into the application's Alembic
directory (see ``docs/cli.md``). The fill is the rollup's GROUP BY compiled for SQLite and
for PostgreSQL with its filter values inlined, so the new table starts equal to the rows
already there, in the migration's transaction.

Freezing has two edges, both deliberate: a column of a custom ``TypeDecorator`` type is
written as the type it stores (its ``impl``), so the migration imports nothing of the
application; and the SQL is the one today's lockstep computes keys with, which is what the
rollup will keep maintaining (key computations never change meaning within a release
series; if one ever had to, it would come with its own migration).

:func:`create_rollups` / :func:`drop_rollups` remain for schemas built without migrations
(tests, ``create_all`` apps): they create the tables from the live definitions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from alembic.autogenerate import render_python_code
from alembic.operations import ops
from sqlalchemy import MetaData, Table, TypeDecorator, insert
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.engine.default import DefaultDialect

from lockstep.aggregates.rollup import Rollup


def _dialect(kind: type[DefaultDialect]) -> Dialect:
    # A "named" parameter style: under pyformat (PostgreSQL's default) a compiled literal's
    # % would be doubled, and doubled again when the migration runs the text on psycopg.
    return kind(paramstyle="named")


# The fill is compiled for both backends lockstep runs on; the migration picks one.
DIALECTS = {"postgresql": _dialect(PGDialect), "sqlite": _dialect(SQLiteDialect)}

# A bind parameter as ``sqlalchemy.text()`` would read it (":name" not after ":", a word
# character or a backslash): a literal value holding one must not become a parameter.
_BIND_LIKE = re.compile(r"(?<![:\w\\]):(?=\w)")
# A quoted literal or identifier (never broken or changed), or whitespace (a place to break).
_PIECE = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")|(\s+)")
_WIDTH = 76


@dataclass(frozen=True, slots=True)
class RollupMigration:
    """The bodies of ``upgrade()`` and ``downgrade()`` as lines of Python (no indentation);
    they use ``op`` and ``sa`` (``import sqlalchemy as sa``) and nothing else."""

    upgrade: tuple[str, ...]
    downgrade: tuple[str, ...]

    def indented(self, lines: Sequence[str], by: str = "    ") -> str:
        """``lines`` as the body text Alembic's script template expects (first line bare)."""
        return "\n".join((by + line) if line else "" for line in lines).lstrip()


def rollup_migration(*rollups: Rollup) -> RollupMigration:
    """The frozen migration creating and filling ``rollups`` (dropping them on downgrade)."""
    upgrade: list[str] = []
    downgrade: list[str] = []
    for rollup in rollups:
        if upgrade:
            upgrade.append("")
        upgrade += _create_table(rollup.table)
        upgrade += [
            f"# {rollup.name} starts equal to the GROUP BY of the rows already there.",
            "op.execute(",
            "    sa.text(",
            "        {",
        ]
        for name, dialect in DIALECTS.items():
            upgrade.append(f'            "{name}": (')
            upgrade += [
                f"                {piece}" for piece in _literal(_fill_sql(rollup, dialect))
            ]
            upgrade.append("            ),")
        upgrade += ["        }[op.get_context().dialect.name]", "    )", ")"]
        downgrade.insert(0, f'op.drop_table("{rollup.name}")')
    return RollupMigration(tuple(upgrade), tuple(downgrade))


def _create_table(table: Table) -> list[str]:
    """``op.create_table(...)`` for ``table`` as Alembic's autogenerate writes it, custom
    types replaced by what they store."""
    frozen = table.to_metadata(MetaData(naming_convention=table.metadata.naming_convention))
    for column in frozen.columns:
        if isinstance(column.type, TypeDecorator):
            column.type = column.type.impl_instance
    code = render_python_code(ops.UpgradeOps(ops=[ops.CreateTableOp.from_table(frozen)]))
    return [
        line.removeprefix("    ")
        for line in code.splitlines()
        if line.strip() and not line.strip().startswith("# ###")
    ]


def _fill_sql(rollup: Rollup, dialect: Dialect) -> str:
    columns = [c.name for c in rollup.table.c]
    statement = insert(rollup.table).from_select(columns, rollup.grouped())
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _literal(sql: str) -> list[str]:
    """``sql`` as adjacent Python string literals of at most about ``_WIDTH`` characters,
    broken only at whitespace outside quotes (each run of it made one space)."""
    sql = _BIND_LIKE.sub(r"\\:", sql)
    words: list[str] = []
    current = ""
    position = 0
    for match in _PIECE.finditer(sql):
        current += sql[position : match.start()]
        if match.group(1) is not None:
            current += match.group(1)
        else:
            words.append(current)
            current = ""
        position = match.end()
    words.append(current + sql[position:])
    lines: list[str] = []
    line = ""
    for word in filter(None, words):
        if line and len(line) + 1 + len(word) > _WIDTH:
            lines.append(line + " ")
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return ['"' + piece.replace("\\", "\\\\").replace('"', '\\"') + '"' for piece in lines]


def create_rollups(connection: Connection, *rollups: Rollup, fill: bool = True) -> None:
    """Create the rollup tables (if missing) from their live definitions and, with ``fill``,
    load them from the source. For schemas built without migrations; a migration uses
    :func:`rollup_migration`'s frozen code instead."""
    for rollup in rollups:
        rollup.table.create(connection, checkfirst=True)
        if fill:
            columns = [c.name for c in rollup.table.c]
            connection.execute(insert(rollup.table).from_select(columns, rollup.grouped()))


def drop_rollups(connection: Connection, *rollups: Rollup) -> None:
    """Drop the rollup tables (if present)."""
    for rollup in reversed(rollups):
        rollup.table.drop(connection, checkfirst=True)
