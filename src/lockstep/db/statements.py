"""Which tables a SQL text writes: the one classifier of lockstep's write path.

Hand-written because no library answers the question lockstep must ask of every ``text()``
statement a session runs — "which tables may this change?" — for both PostgreSQL and SQLite
syntax and without a database round trip. (sqlparse and friends split and format SQL; none
resolves write targets through CTEs, upserts and locking clauses.) It is a tokenizer, not a
parser, and it fails closed:

* comments, string literals (``'...'``, ``E'...'``, dollar quotes) and quoted identifiers are
  skipped, so ``/* UPDATE x */`` or ``'DELETE FROM x'`` never count, and parentheses do not
  hide anything: a data-modifying CTE (``WITH d AS (DELETE FROM t RETURNING *) SELECT ...``)
  names ``t``;
* every ``INSERT [OR ...] INTO t``, ``REPLACE INTO t``, ``UPDATE [OR ...] [ONLY] t``,
  ``DELETE FROM t``, ``MERGE INTO t``, ``TRUNCATE [TABLE] t, u``, ``COPY t FROM``, ``REFRESH
  MATERIALIZED VIEW t`` and ``ALTER/DROP TABLE t`` anywhere in the text is a write of ``t``
  (``DO UPDATE`` of an upsert and ``FOR [NO KEY] UPDATE`` of a locking read are not);
* a statement with no such target is a read only if it starts with a verb that cannot write
  (``SELECT``, ``WITH``, ``VALUES``, ``SHOW``, ``EXPLAIN``, ``PRAGMA``, ``SET``,
  transaction control, ``CREATE``/``GRANT``, ...); anything else (``CALL``, ``DO``,
  ``EXECUTE``, unknown verbs) cannot be attributed and raises :class:`UnattributedWriteError`, which
  names the statement and how to declare what it writes.

A function called by a ``SELECT`` that writes tables cannot be seen from the text: declare
such statements' tables with the ``lockstep_writes`` execution option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lockstep.db.writes import Operation
from lockstep.exceptions import UnattributedWriteError

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*)
    | (?P<string>[EeBbXxNn]?'(?:[^']|'')*'?)
    | (?P<dollar>\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$)
    | (?P<quoted>"(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?)
    | (?P<word>[A-Za-z_][A-Za-z_0-9$]*)
    | (?P<param>[:@?$][A-Za-z_0-9]*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

# Verbs that change no existing row (COPY ... TO and DDL that creates or grants included;
# their writing forms are caught as targets first).
_READ_VERBS = frozenset(
    [
        "select",
        "with",
        "values",
        "table",
        "show",
        "explain",
        "describe",
        "pragma",
        "set",
        "reset",
        "begin",
        "start",
        "commit",
        "end",
        "rollback",
        "savepoint",
        "release",
        "abort",
        "listen",
        "unlisten",
        "notify",
        "analyze",
        "vacuum",
        "lock",
        "declare",
        "fetch",
        "move",
        "close",
        "prepare",
        "deallocate",
        "discard",
        "checkpoint",
        "load",
        "copy",
        "create",
        "comment",
        "grant",
        "revoke",
        "reindex",
        "cluster",
    ]
)

_VERB_OP: dict[str, Operation] = {
    "insert": "insert",
    "replace": "insert",
    "update": "update",
    "delete": "delete",
    "merge": "update",
    "truncate": "delete",
    "copy": "insert",
    "alter": "update",
    "drop": "delete",
    "refresh": "update",
}


@dataclass(frozen=True, slots=True)
class Target:
    """A table a statement writes (its unqualified name, lower case unless it was quoted)."""

    table: str
    op: Operation


def _tokens(sql: str) -> list[tuple[str, str]]:
    """(kind, text) of the significant tokens: words, quoted names, punctuation."""
    out: list[tuple[str, str]] = []
    position = 0
    length = len(sql)
    while position < length:
        match = _TOKEN.match(sql, position)
        assert match is not None  # "other" matches any single character
        kind = match.lastgroup or "other"
        text = match.group()
        position = match.end()
        if kind == "block_comment":
            end = sql.find("*/", position)
            position = length if end < 0 else end + 2
            continue
        if kind == "dollar":
            end = sql.find(text, position)
            position = length if end < 0 else end + len(text)
            continue
        if kind in ("space", "line_comment", "string", "param"):
            continue
        out.append((kind, text))
    return out


def _name(token: tuple[str, str]) -> str | None:
    kind, text = token
    if kind == "word":
        return text.lower()
    if kind == "quoted":
        return text[1:-1].replace('""', '"') if len(text) > 1 else None
    return None


def _word(tokens: list[tuple[str, str]], i: int) -> str:
    return tokens[i][1].lower() if i < len(tokens) and tokens[i][0] == "word" else ""


def _table_after(tokens: list[tuple[str, str]], i: int) -> tuple[str | None, int]:
    """The (possibly schema-qualified) name starting at ``i``: its last part, and the index
    after it."""
    if i >= len(tokens):
        return None, i
    name = _name(tokens[i])
    i += 1
    while name is not None and i + 1 < len(tokens) and tokens[i][1] == ".":
        name = _name(tokens[i + 1])
        i += 2
    return name, i


def classify(sql: str) -> tuple[Target, ...]:
    """The tables ``sql`` writes (empty for a read). Raises UnattributedWriteError for a
    statement that may write but names no table lockstep can see."""
    tokens = _tokens(sql)
    targets: list[Target] = []
    statement_starts = [0]
    for i, (kind, text) in enumerate(tokens):
        if text == ";":
            statement_starts.append(i + 1)
            continue
        if kind != "word":
            continue
        verb = text.lower()
        previous = _word(tokens, i - 1)
        table: str | None = None
        if verb in ("insert", "replace", "merge"):
            j = i + 1
            if verb == "insert" and _word(tokens, j) == "or":
                j += 2  # INSERT OR REPLACE / IGNORE / ...
            if _word(tokens, j) != "into":
                continue
            table, _ = _table_after(tokens, j + 1)
        elif verb == "update":
            if previous in ("do", "for", "key"):
                continue  # upsert action, or a locking read (FOR [NO KEY] UPDATE)
            j = i + 1
            if _word(tokens, j) == "or":
                j += 2
            if _word(tokens, j) == "only":
                j += 1
            table, _ = _table_after(tokens, j)
            if table in (None, "set"):
                continue
        elif verb == "delete":
            if _word(tokens, i + 1) != "from":
                continue  # ON DELETE CASCADE in DDL, "delete" as a name
            j = i + 2
            if _word(tokens, j) == "only":
                j += 1
            table, _ = _table_after(tokens, j)
        elif verb == "truncate":
            j = i + 1
            if _word(tokens, j) == "table":
                j += 1
            if _word(tokens, j) == "only":
                j += 1
            while True:
                table, j = _table_after(tokens, j)
                if table is None:
                    break
                targets.append(Target(table, "delete"))
                if j < len(tokens) and tokens[j][1] == ",":
                    j += 1
                    continue
                break
            continue
        elif verb == "copy":
            if i not in statement_starts:
                continue
            table, j = _table_after(tokens, i + 1)
            while (
                j < len(tokens)
                and tokens[j][1] != ";"
                and _word(tokens, j)
                not in (
                    "from",
                    "to",
                )
            ):
                j += 1
            if _word(tokens, j) != "from":
                continue  # COPY ... TO reads
        elif verb == "refresh":
            if _word(tokens, i + 1) != "materialized":
                continue
            j = i + 3
            if _word(tokens, j) == "concurrently":
                j += 1
            table, _ = _table_after(tokens, j)
        elif verb in ("alter", "drop"):
            if _word(tokens, i + 1) != "table":
                continue
            j = i + 2
            while _word(tokens, j) in ("if", "exists", "only"):
                j += 1
            table, _ = _table_after(tokens, j)
        else:
            continue
        if table is not None:
            targets.append(Target(table, _VERB_OP[verb]))
    if targets:
        return tuple(dict.fromkeys(targets))
    for start in statement_starts:
        first = _word(tokens, start)
        if start >= len(tokens) or first in _READ_VERBS or tokens[start][1] == "(":
            continue
        raise UnattributedWriteError(
            f"lockstep cannot tell which tables this statement writes: {_excerpt(sql)!r}. "
            "Write it with insert()/update()/delete(), or name its tables: "
            "session.execute(stmt, execution_options={'lockstep_writes': ['table', ...]})"
        )
    return ()


def _excerpt(sql: str, limit: int = 120) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
