"""Shape filters: the safe where subset, its SQL and its Python evaluation (requirement 6).

The fuzz generates where clauses from a vocabulary that includes undeclared columns (the
tenant column among them), SQL that must never pass (comments, semicolons, functions,
subqueries) and unbalanced parentheses: each either fails to parse with a 400 or yields a
filter over declared columns only, whose rows — with the tenant scope ANDed around it —
all belong to the tenant, and on which SQL and Python agree row by row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
)

from lockstep.offline import filters
from lockstep.offline.filters import FilterError, both, equal_to, parse
from lockstep.offline.values import codec_for

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("organization_id", Integer, nullable=False),
    Column("status", String(20)),
    Column("priority", Integer),
    Column("flagged", Boolean),
    Column("due", Date),
)
DECLARED = {c: codec_for(items.c[c]) for c in ("id", "status", "priority", "flagged", "due")}
SCOPE = equal_to({"organization_id": 1})


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    rows: list[dict[str, Any]] = []
    for i in range(1, 61):
        rows.append(
            {
                "id": i,
                "organization_id": 1 + i % 3,
                "status": [None, "open", "closed", "it's"][i % 4],
                "priority": None if i % 7 == 0 else i % 5,
                "flagged": [None, True, False][i % 3],
                "due": None if i % 5 == 0 else dt.date(2026, 1, 1) + dt.timedelta(days=i),
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(items), rows)
    yield engine
    engine.dispose()


def test_the_subset_parses_into_a_tree() -> None:
    node = parse(
        "status = 'open' AND (priority >= $1 OR id IN (1, 2, $2)) AND NOT flagged = true "
        'AND "due" IS NOT NULL',
        DECLARED,
        {"1": "3", "2": "9"},
    )
    assert filters.columns_of(node) == {"status", "priority", "id", "flagged", "due"}
    assert parse("  ", DECLARED) == filters.TRUE
    assert parse("priority <> 2", DECLARED) == filters.Compare("priority", "<>", 2)
    assert parse("priority != 2", DECLARED) == filters.Compare("priority", "<>", 2)
    assert parse("status = 'it''s'", DECLARED) == filters.Compare("status", "=", "it's")
    assert parse("due < '2026-02-01'", DECLARED) == filters.Compare("due", "<", dt.date(2026, 2, 1))


@pytest.mark.parametrize(
    ("where", "params", "says"),
    [
        ("organization_id = 2", {}, "cannot be filtered"),
        ("password = 'x'", {}, "cannot be filtered"),
        ("status > 'a'", {}, "equality only"),
        ("id = 1; DROP TABLE items", {}, "unexpected"),
        ("id = 1 -- comment", {}, "unexpected"),
        ("id = 1 /* x */", {}, "unexpected"),
        ("lower(status) = 'a'", {}, "cannot be filtered"),
        ("id IN (SELECT id FROM items)", {}, "expected a value"),
        ("id = 1) OR (1 = 1", {}, "unexpected"),
        ("id = $1", {}, "no value for $1"),
        ("id = 1", {"1": "2"}, "params not used"),
        ("id = 'seven'", {}, "not a valid int4"),
        ("id = 1 OR", {}, "ends too early"),
        ("NOT", {}, "ends too early"),
    ],
)
def test_what_is_refused(where: str, params: dict[str, str], says: str) -> None:
    with pytest.raises(FilterError, match=r"(?i)" + says.replace("$", r"\$")):
        parse(where, DECLARED, params)


def sql_ids(engine: Engine, node: filters.Filter) -> set[int]:
    with engine.connect() as connection:
        query = select(items.c.id).where(filters.to_sql(node, items))
        return set(connection.execute(query).scalars())


def python_ids(engine: Engine, node: filters.Filter) -> set[int]:
    with engine.connect() as connection:
        rows = connection.execute(select(items)).mappings().all()
    return {r["id"] for r in rows if filters.matches(node, r)}


def test_sql_and_python_agree_on_nulls(engine: Engine) -> None:
    for where in (
        "priority <> 2",
        "NOT priority = 2",
        "priority IN (1, 2)",
        "priority NOT IN (1, 2)",
        "flagged = false OR priority > 3",
        "NOT (flagged = true AND priority < 2)",
        "due IS NULL OR due >= '2026-01-20'",
        "status = 'it''s'",
    ):
        node = parse(where, DECLARED)
        assert sql_ids(engine, node) == python_ids(engine, node), where


_ATOMS = st.sampled_from(
    [
        "id", "status", "priority", "flagged", "due", '"priority"', "organization_id",
        "password_hash", "=", "<>", "!=", "<", "<=", ">", ">=", "IN", "NOT", "IS", "NULL",
        "AND", "OR", "TRUE", "FALSE", "(", ")", ",", "1", "2", "3", "-1", "0.5", "'open'",
        "'closed'", "'it''s'", "'2026-01-15'", "$1", "$2", "--", ";", "/*", "*/", "'",
        "SELECT", "lower(", "1=1", "x",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ATOMS, min_size=1, max_size=14), st.sampled_from(["1", "2", "open"]))
def test_no_generated_where_escapes_the_scope(engine: Engine, words: list[str], param: str) -> None:
    source = " ".join(words)
    params = {"1": param} if "$1" in source else {}
    try:
        node = parse(source, DECLARED, params)
    except FilterError:
        return
    assert filters.columns_of(node) <= set(DECLARED)
    scoped = both(SCOPE, node)
    ids = sql_ids(engine, scoped)
    assert all(i % 3 == 0 for i in ids)  # organization 1: ids with i % 3 == 0
    assert ids == python_ids(engine, scoped)
