"""The schema of a database as text, for tests that freeze what migrations create.

    with engine.connect() as connection:            # or ``await conn.run_sync(dump_schema)``
        text = dump_schema(connection)

The dump is everything DDL decided and nothing data decided: on SQLite the ``CREATE``
statements SQLite keeps (as issued, but whitespace and quotes around plain names
normalized); on PostgreSQL, per table, each column's position, type, nullability and
default, and each constraint's and index's definition as PostgreSQL prints it, plus
sequences and enum types. Lines are sorted, so two databases built by different routes (an
old chain of migrations, a rewritten one, ``create_all``) compare equal as strings exactly
when their schemas are the same. Alembic's own ``alembic_version`` table is included (its
DDL, never its row).

Raises ``ValueError`` on other backends.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Connection

_SQLITE = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master "
    "WHERE name NOT LIKE 'sqlite_stat%' ORDER BY type, name"
)

_PG_COLUMNS = """
SELECT c.relname AS tbl, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS dflt,
       a.attidentity::text AS ident,
       row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) AS position
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND a.attnum > 0
  AND NOT a.attisdropped
"""

_PG_CONSTRAINTS = """
SELECT c.relname AS tbl, k.conname AS name, pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
"""

_PG_INDEXES = """
SELECT tablename AS tbl, indexname AS name, indexdef AS definition
FROM pg_indexes WHERE schemaname = current_schema()
"""

_PG_SEQUENCES = """
SELECT sequencename AS name, data_type::text AS type, increment_by AS step
FROM pg_sequences WHERE schemaname = current_schema()
"""

_PG_ENUMS = """
SELECT t.typname AS name, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) AS labels
FROM pg_type t
JOIN pg_enum e ON e.enumtypid = t.oid
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = current_schema()
GROUP BY t.typname
"""


# A quoted literal or identifier (kept as is), or a run of whitespace (made one space).
_TOKEN = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")|\s+")
_PLAIN_NAME = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*)"')


def _normalized(sql: str | None) -> str | None:
    """``sql`` with each run of whitespace outside quotes made one space, and plain
    identifiers unquoted: how SQLAlchemy lays out its DDL, and the quotes SQLite adds when
    it renames a table (Alembic's batch mode on SQLite), are not part of the schema."""
    if sql is None:
        return None

    def piece(match: re.Match[str]) -> str:
        quoted = match.group(1)
        if quoted is None:
            return " "
        plain = _PLAIN_NAME.fullmatch(quoted)
        return plain.group(1) if plain else quoted

    return _TOKEN.sub(piece, sql).strip()


def dump_schema(connection: Connection) -> str:
    """The schema ``connection``'s database holds, one sorted line per object (see above)."""
    dialect = connection.dialect.name
    lines: list[str] = []
    if dialect == "sqlite":
        for row in connection.execute(text(_SQLITE)):
            lines.append(f"{row.type} {row.name} on {row.tbl_name}: {_normalized(row.sql)}")
    elif dialect == "postgresql":
        for row in connection.execute(text(_PG_COLUMNS)):
            null = "NOT NULL" if row.not_null else "NULL"
            extra = f" DEFAULT {row.dflt}" if row.dflt is not None else ""
            extra += f" IDENTITY {row.ident}" if row.ident else ""
            # The position, not attnum: a column dropped and added again leaves a gap in
            # attnum that a database built without the drop does not have.
            lines.append(
                f"column {row.tbl} #{row.position:03d} {row.name}: {row.type} {null}{extra}"
            )
        for row in connection.execute(text(_PG_CONSTRAINTS)):
            lines.append(f"constraint {row.tbl}.{row.name}: {row.definition}")
        for row in connection.execute(text(_PG_INDEXES)):
            lines.append(f"index {row.tbl}.{row.name}: {row.definition}")
        for row in connection.execute(text(_PG_SEQUENCES)):
            lines.append(f"sequence {row.name}: {row.type} by {row.step}")
        for row in connection.execute(text(_PG_ENUMS)):
            lines.append(f"enum {row.name}: {row.labels}")
    else:
        raise ValueError(f"dump_schema supports sqlite and postgresql, not {dialect}")
    return "\n".join(sorted(lines)) + "\n"
