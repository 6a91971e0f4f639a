"""Shape filters: a safe subset of SQL ``WHERE`` parsed into a tree, never concatenated.

A client's ``where`` (and its ``params[n]``) is parsed into a :data:`Filter` over the shape's
declared columns only; the server's scope is another filter ANDed around it
(:func:`both`). The same tree is compiled to SQLAlchemy (bound parameters, for the snapshot)
and evaluated in Python over row images (for changes), with SQL's three-valued logic, so
the two always agree on which rows belong to a shape.

The subset (what Electric's clients send for row filters)::

    expr   := term (OR term)*          term := factor (AND factor)*
    factor := NOT factor | ( expr ) | TRUE | FALSE | predicate
    predicate := column (= | <> | != | < | <= | > | >=) value
               | column [NOT] IN ( value, ... ) | column IS [NOT] NULL
    value  := 'text' | number | TRUE | FALSE | $n

Ranges (``<``, ``BETWEEN``-style pairs) are allowed only on numbers, dates and timestamps,
whose order is the same in Python and every database; text is compared for equality only
(a collation could order it differently). Anything else raises :class:`FilterError` (a 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, false, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from lockstep.exceptions import BadRequestError
from lockstep.offline.values import ColumnCodec

MAX_LENGTH = 4_000
MAX_NODES = 200


class FilterError(BadRequestError):
    """A ``where`` outside the supported subset, or naming a column the shape does not
    declare."""

    code = "invalid_where"


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


@dataclass(frozen=True, slots=True)
class Compare:
    column: str
    op: str  # = <> < <= > >=
    value: Any  # a Python value of the column's kind, or None (SQL NULL)


@dataclass(frozen=True, slots=True)
class In:
    column: str
    values: tuple[Any, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IsNull:
    column: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Filter


Filter = Const | Compare | In | IsNull | And | Or | Not
"""A parsed filter: only declared columns, values already of each column's kind."""

TRUE = Const(True)


def both(*filters: Filter | None) -> Filter:
    """The conjunction of ``filters`` (None ones left out)."""
    items = tuple(f for f in filters if f is not None and f != TRUE)
    if not items:
        return TRUE
    return items[0] if len(items) == 1 else And(items)


def equal_to(values: Mapping[str, Any]) -> Filter:
    """``column = value`` for each item, ANDed; a list or set value is ``column IN (...)``
    (empty: nothing matches). The form a scope usually takes."""
    parts: list[Filter] = []
    for column, value in values.items():
        if isinstance(value, list | tuple | set | frozenset):
            parts.append(In(column, tuple(value)) if value else Const(False))
        else:
            parts.append(Compare(column, "=", value))
    return both(*parts)


def columns_of(node: Filter) -> set[str]:
    """Every column ``node`` reads."""
    if isinstance(node, Compare | In | IsNull):
        return {node.column}
    if isinstance(node, And | Or):
        return set().union(*(columns_of(i) for i in node.items))
    if isinstance(node, Not):
        return columns_of(node.item)
    return set()


# -- parsing ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<quoted>"(?:[^"]|"")+")
      | (?P<param>\$[1-9][0-9]{0,3})
      | (?P<number>-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
      | (?P<op><>|!=|<=|>=|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

_RANGE_OPS = frozenset({"<", "<=", ">", ">="})
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    end = len(source.rstrip())
    while position < end:
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            raise FilterError(f"unexpected text in where at {position}: {source[position:][:20]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append(_Token(kind, match.group(kind)))
        position = match.end()
    return out


def parse(
    source: str | None,
    columns: Mapping[str, ColumnCodec],
    params: Mapping[str, str] | None = None,
) -> Filter:
    """Parse a client's ``where`` over ``columns`` (name → codec) with its ``params``
    (``"1"`` → text); None or blank is :data:`TRUE`. Raises :class:`FilterError`."""
    if source is None or not source.strip():
        if params:
            raise FilterError("params given without a where")
        return TRUE
    if len(source) > MAX_LENGTH:
        raise FilterError(f"where is longer than {MAX_LENGTH} characters")
    parser = _Parser(_tokens(source), columns, dict(params or {}))
    node = parser.expression()
    if parser.position != len(parser.tokens):
        raise FilterError(f"unexpected {parser.tokens[parser.position].text!r} in where")
    unused = set(parser.params) - parser.used
    if unused:
        raise FilterError(f"params not used by the where: {', '.join(sorted(unused))}")
    return node


class _Parser:
    def __init__(
        self, tokens: list[_Token], columns: Mapping[str, ColumnCodec], params: dict[str, str]
    ) -> None:
        self.tokens = tokens
        self.columns = columns
        self.params = params
        self.used: set[str] = set()
        self.position = 0
        self.nodes = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def word(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.lower() in words:
            self.position += 1
            return True
        return False

    def expect(self, text: str) -> None:
        token = self.peek()
        if token is None or token.text != text:
            raise FilterError(f"expected {text!r} in where")
        self.position += 1

    def count(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(f"where has more than {MAX_NODES} terms")

    def expression(self) -> Filter:
        items = [self.term()]
        while self.word("or"):
            items.append(self.term())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def term(self) -> Filter:
        items = [self.factor()]
        while self.word("and"):
            items.append(self.factor())
        return items[0] if len(items) == 1 else And(tuple(items))

    def factor(self) -> Filter:
        self.count()
        if self.word("not"):
            return Not(self.factor())
        token = self.peek()
        if token is None:
            raise FilterError("where ends too early")
        if token.text == "(":
            self.position += 1
            inner = self.expression()
            self.expect(")")
            return inner
        if self.word("true"):
            return Const(True)
        if self.word("false"):
            return Const(False)
        return self.predicate()

    def column(self) -> tuple[str, ColumnCodec]:
        token = self.peek()
        if token is None or token.kind not in ("word", "quoted"):
            raise FilterError("expected a column name in where")
        if token.kind == "word":
            if token.text.lower() in _KEYWORDS:
                raise FilterError(f"expected a column name in where, not {token.text!r}")
            name = token.text.lower()
        else:
            name = token.text[1:-1].replace('""', '"')
        self.position += 1
        codec = self.columns.get(name)
        if codec is None:
            raise FilterError(f"column {name!r} cannot be filtered in this shape")
        return name, codec

    def predicate(self) -> Filter:
        name, codec = self.column()
        if self.word("is"):
            negated = self.word("not")
            if not self.word("null"):
                raise FilterError("expected NULL after IS")
            return IsNull(name, negated)
        negated = self.word("not")
        if self.word("in"):
            self.expect("(")
            values = [self.value(codec)]
            while (token := self.peek()) is not None and token.text == ",":
                self.position += 1
                values.append(self.value(codec))
                self.count()
            self.expect(")")
            return In(name, tuple(values), negated)
        if negated:
            raise FilterError("expected IN after NOT")
        token = self.peek()
        if token is None or token.kind != "op":
            raise FilterError(f"expected a comparison after {name!r}")
        self.position += 1
        op = "<>" if token.text == "!=" else token.text
        if op in _RANGE_OPS and not codec.ordered:
            raise FilterError(f"{name!r} can be compared for equality only")
        return Compare(name, op, self.value(codec))

    def value(self, codec: ColumnCodec) -> Any:
        token = self.peek()
        if token is None:
            raise FilterError("expected a value in where")
        self.position += 1
        if token.kind == "param":
            key = token.text[1:]
            if key not in self.params:
                raise FilterError(f"no value for ${key} (params[{key}])")
            self.used.add(key)
            return self._parse(codec, self.params[key])
        if token.kind == "string":
            return self._parse(codec, token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            return self._parse(codec, token.text)
        if token.kind == "word" and token.text.lower() in ("true", "false"):
            return self._parse(codec, token.text.lower())
        raise FilterError(f"expected a value in where, not {token.text!r}")

    @staticmethod
    def _parse(codec: ColumnCodec, text: str) -> Any:
        try:
            return codec.parse(text)
        except (ValueError, ArithmeticError) as exc:
            raise FilterError(f"{text[:40]!r} is not a valid {codec.pg_type}") from exc


# -- SQL --------------------------------------------------------------------------------------

_SQL_OPS: Mapping[str, Callable[[Any, Any], Any]] = {
    "=": lambda c, v: c == v,
    "<>": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}


def to_sql(node: Filter, table: Table) -> ColumnElement[bool]:
    """``node`` as a SQLAlchemy expression over ``table`` (values as bound parameters)."""
    if isinstance(node, Const):
        return true() if node.value else false()
    if isinstance(node, Compare):
        column = table.c[node.column]
        if node.value is None:  # SQL: a comparison with NULL is never true
            return false()
        return _SQL_OPS[node.op](column, node.value)  # type: ignore[no-any-return]
    if isinstance(node, In):
        column = table.c[node.column]
        present = [v for v in node.values if v is not None]
        inside: ColumnElement[bool] = column.in_(present) if present else false()
        if not node.negated:
            return inside
        if len(present) < len(node.values):  # NOT IN (..., NULL) is never true
            return false()
        return not_(inside)
    if isinstance(node, IsNull):
        column = table.c[node.column]
        return column.is_not(None) if node.negated else column.is_(None)
    if isinstance(node, And):
        return and_(*(to_sql(i, table) for i in node.items))
    if isinstance(node, Or):
        return or_(*(to_sql(i, table) for i in node.items))
    return not_(to_sql(node.item, table))


# -- Python -----------------------------------------------------------------------------------

_PY_OPS: Mapping[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "<>": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def evaluate(node: Filter, row: Mapping[str, Any]) -> bool | None:
    """SQL's three-valued answer of ``node`` for ``row`` (column → Python value): True,
    False or None (unknown, which a WHERE treats as false)."""
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Compare):
        left = row[node.column]
        if left is None or node.value is None:
            return None
        return _PY_OPS[node.op](left, node.value)
    if isinstance(node, In):
        left = row[node.column]
        answer: bool | None
        if left is None:
            answer = None
        elif left in [v for v in node.values if v is not None]:
            answer = True
        else:
            answer = None if None in node.values else False
        return answer if not node.negated or answer is None else not answer
    if isinstance(node, IsNull):
        return (row[node.column] is None) != node.negated
    if isinstance(node, And):
        answers = [evaluate(i, row) for i in node.items]
        if False in answers:
            return False
        return None if None in answers else True
    if isinstance(node, Or):
        answers = [evaluate(i, row) for i in node.items]
        if True in answers:
            return True
        return None if None in answers else False
    inner = evaluate(node.item, row)
    return None if inner is None else not inner


def matches(node: Filter, row: Mapping[str, Any]) -> bool:
    """Whether a WHERE of ``node`` keeps ``row``."""
    return evaluate(node, row) is True


def canonical_text(node: Filter) -> str:
    """A stable text of ``node`` (for shape handles): equal filters, equal texts."""
    if isinstance(node, Const):
        return "TRUE" if node.value else "FALSE"
    if isinstance(node, Compare):
        return f"({node.column}{node.op}{node.value!r})"
    if isinstance(node, In):
        return f"({node.column}{' NOT' if node.negated else ''} IN {list(node.values)!r})"
    if isinstance(node, IsNull):
        return f"({node.column} IS{' NOT' if node.negated else ''} NULL)"
    if isinstance(node, And | Or):
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(canonical_text(i) for i in node.items) + ")"
    return f"(NOT {canonical_text(node.item)})"


def parse_params(query: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``params[1]=a&params[2]=b`` (or ``params=a,b``, the client's array form is not
    sent) from a query string's items."""
    found: dict[str, str] = {}
    for key, value in query:
        match = re.fullmatch(r"params\[([1-9][0-9]{0,3})\]", key)
        if match is not None:
            if match.group(1) in found:
                raise FilterError(f"params[{match.group(1)}] given twice")
            found[match.group(1)] = value
    return found
