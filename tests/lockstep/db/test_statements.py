"""The write path's SQL classifier: which tables a text statement writes, fail-closed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.db import Target, classify
from lockstep.exceptions import UnattributedWriteError

CASES: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("SELECT 1", ()),
    ("select * from x for update", ()),
    ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", ()),
    ("  (SELECT 1) UNION (SELECT 2)", ()),
    ("SELECT 'DELETE FROM x' -- UPDATE y\n", ()),
    ("select $tag$ UPDATE x $tag$", ()),
    ("SELECT $1::int", ()),
    ("PRAGMA foreign_keys=ON", ()),
    ("COPY t TO STDOUT", ()),
    ("CREATE INDEX i ON t(a)", ()),
    ("EXPLAIN SELECT 1", ()),
    ("INSERT INTO folders (id) VALUES (7)", (("folders", "insert"),)),
    ("WITH v AS (SELECT 1) UPDATE transactions SET category='x'", (("transactions", "update"),)),
    ("/* opaque */ UPDATE folders SET name = 'x'", (("folders", "update"),)),
    ('insert or replace into "Weird""Name" values (1)', (('Weird"Name', "insert"),)),
    ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2", (("t", "insert"),)),
    (
        "WITH d AS (DELETE FROM public.items RETURNING *) SELECT count(*) FROM d",
        (("items", "delete"),),
    ),
    ("TRUNCATE TABLE a, b", (("a", "delete"), ("b", "delete"))),
    ("TRUNCATE c RESTART IDENTITY", (("c", "delete"),)),
    ("COPY t FROM STDIN", (("t", "insert"),)),
    ("EXPLAIN ANALYZE UPDATE t SET a=1", (("t", "update"),)),
    ("ALTER TABLE t ADD COLUMN x int", (("t", "update"),)),
    ("DROP TABLE IF EXISTS t", (("t", "delete"),)),
    ("update only t set a = 1", (("t", "update"),)),
    (
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a",
        (("t", "update"),),
    ),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY mv", (("mv", "update"),)),
    ("UPDATE a SET x = 1; DELETE FROM b", (("a", "update"), ("b", "delete"))),
    ("UPDATE [odd name] SET x = 1", (("odd name", "update"),)),
]


@pytest.mark.parametrize(("sql", "expected"), CASES)
def test_targets(sql: str, expected: tuple[tuple[str, str], ...]) -> None:
    assert classify(sql) == tuple(Target(t, op) for t, op in expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sql", ["CALL refresh()", "DO $$ BEGIN DELETE FROM x; END $$", "EXECUTE prepared_write(1)"]
)
def test_statements_that_may_write_unnamed_tables_are_refused(sql: str) -> None:
    with pytest.raises(UnattributedWriteError, match="lockstep_writes"):
        classify(sql)


words = st.sampled_from(["UPDATE", "DELETE FROM", "INSERT INTO", "TRUNCATE", "x", "'", ";", "("])
filler = st.lists(words, max_size=8).map(" ".join)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda n: n not in {"set", "only", "table", "from", "into", "or"}
)


@given(name=names, hidden=filler, op=st.sampled_from(["update", "delete", "insert"]))
def test_comments_and_strings_never_hide_or_add_a_target(name: str, hidden: str, op: str) -> None:
    escaped = hidden.replace("'", "''").replace("*/", "")
    verb = {
        "update": f"UPDATE {name} SET a = '{escaped}'",
        "delete": f"DELETE FROM {name} WHERE b = '{escaped}'",
        "insert": f"INSERT INTO {name} VALUES ('{escaped}')",
    }[op]
    sql = f"/* {escaped} */ {verb} -- {hidden}\n"
    assert classify(sql) == (Target(name, op),)  # type: ignore[arg-type]
