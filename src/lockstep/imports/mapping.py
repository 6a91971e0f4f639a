"""How to read one bank's statements: which record is the header, which column holds
which role, the decimal mark, the day/month order, the sign convention and the currency.

A :class:`StatementMapping` is what detection proposes, what a person corrects (answers)
and what a profile saves. It is plain data (``to_dict``/``from_dict`` round-trip through
JSON) and carries the *fingerprint* of the header it was made for: a later file whose
header has the same fingerprint is read the same way without asking again.

:class:`Question` is what detection could not decide and will not guess: the key of the
answer it needs (``date_order``, ``decimal``, ``sign``, or a role such as ``amount``), a
sentence saying why, and the choices.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lockstep.exceptions import ValidationFailedError
from lockstep.imports import roles as r
from lockstep.imports.dates import ORDERS
from lockstep.imports.numbers import COMMA, DOT

AS_WRITTEN, INVERTED = "as_written", "inverted"
SIGNS = (AS_WRITTEN, INVERTED)
DECIMALS = (DOT, COMMA)
SETTINGS = ("date_order", "decimal", "sign", "currency", "account")


def _answer_pattern() -> str:
    """What an answer (``key=value``) can be, as a regular expression a schema can carry:
    a role given a column (any text: which columns exist depends on the file), or a setting
    with one of its values."""
    choices = {"date_order": ORDERS, "decimal": DECIMALS, "sign": SIGNS}
    free = "|".join([*r.ROLES, "account"])  # currency is a role too
    fixed = [f"{key}=({'|'.join(re.escape(v) for v in values)})" for key, values in choices.items()]
    return f"^(({free})=[^\\x00]*|{'|'.join(fixed)})$"


ANSWER_PATTERN = _answer_pattern()  # the ``map`` query parameter's items


@dataclass(frozen=True, slots=True)
class Question:
    key: str
    text: str
    choices: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "text": self.text, "choices": list(self.choices)}


def fingerprint(header: Sequence[str], width: int) -> str:
    """The identity of a header: its labels as words, in order (``headerless:N`` without)."""
    labels = [r.words(label) for label in header]
    if not any(labels):
        return f"headerless:{width}"
    return hashlib.sha256("\x1f".join(labels).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class StatementMapping:
    """``header_row``: the index of the header among the file's records (those before it
    are its preamble); -1 when the file has no header. ``roles``: role -> column index.
    ``sign``: ``as_written`` (negative is money out) or ``inverted`` (a card statement
    whose charges are positive); debit/credit and direction columns need neither."""

    header: tuple[str, ...]
    header_row: int
    roles: Mapping[str, int]
    decimal: str | None = None
    date_order: str | None = None
    sign: str = AS_WRITTEN
    currency: str | None = None
    account: str = ""
    width: int = field(default=0)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.header, self.width or len(self.header))

    def label(self, index: int) -> str:
        name = self.header[index].strip() if index < len(self.header) else ""
        return name or f"column {index + 1}"

    def labels(self) -> dict[str, str]:
        """Role -> the label of its column."""
        return {role: self.label(index) for role, index in self.roles.items()}

    def column(self, answer: str) -> int:
        """The column an answer names: its label (any case) or ``#N`` / ``N`` (1-based)."""
        text = answer.strip().lstrip("#")
        wanted = r.words(answer)
        for index in range(max(len(self.header), self.width)):
            if r.words(self.label(index)) == wanted:
                return index
        if text.isdigit() and 1 <= int(text) <= max(len(self.header), self.width):
            return int(text) - 1
        raise ValidationFailedError(
            f"the file has no column {answer!r}; its columns are: "
            + ", ".join(self.label(i) for i in range(max(len(self.header), self.width))),
            details=[
                {"loc": ["query", "map"], "msg": "no such column", "type": "unknown_reference"}
            ],
        )

    def _names_column(self, answer: str) -> bool:
        try:
            self.column(answer)
        except ValidationFailedError:
            return False
        return True

    def answered(self, answers: Mapping[str, str]) -> StatementMapping:
        """This mapping with ``answers`` applied: a setting (``date_order=dmy``,
        ``decimal=,``, ``sign=inverted``, ``currency=EUR`` when no column is named so) or a
        role given its column
        (``amount=Betrag``; an empty column unsets the role), or the statement's
        ``account``. Raises ValidationFailedError
        naming an unknown key, value or column."""
        mapping = self
        roles = dict(self.roles)
        for key, value in answers.items():
            key = key.strip().lower()
            if key == "currency" and value.strip() and not self._names_column(value):
                key = "currency_code"  # currency=GBP: the file's currency, not a column
            if key in r.ROLES:
                roles.pop(key, None)
                if value.strip():
                    index = mapping.column(value)
                    roles = {k: v for k, v in roles.items() if v != index}
                    roles[key] = index
                continue
            choices = {"date_order": ORDERS, "decimal": DECIMALS, "sign": SIGNS}.get(key)
            if key == "currency_code":
                code = value.strip().upper()
                if len(code) != 3 or not code.isalpha():
                    raise _bad(  # names no column of this file (a schema cannot know them)
                        "currency",
                        value,
                        "a column or a 3-letter currency code",
                        "unknown_reference",
                    )
                mapping = replace(mapping, currency=code)
            elif key == "account":
                mapping = replace(mapping, account=value.strip()[:64])
            elif choices is not None:
                if value not in choices:
                    raise _bad(key, value, " or ".join(choices))
                if key == "date_order":
                    mapping = replace(mapping, date_order=value)
                elif key == "decimal":
                    mapping = replace(mapping, decimal=value)
                else:
                    mapping = replace(mapping, sign=value)
            else:
                raise _bad(key, value, "a role (" + ", ".join(r.ROLES) + ") or a setting ("
                           + ", ".join(SETTINGS) + ")")  # fmt: skip
        return replace(mapping, roles=roles)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "header": list(self.header),
            "header_row": self.header_row,
            "width": self.width,
            "columns": self.labels(),
            "roles": dict(self.roles),
            "decimal": self.decimal,
            "date_order": self.date_order,
            "sign": self.sign,
            "currency": self.currency,
            "account": self.account,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StatementMapping:
        return cls(
            header=tuple(data["header"]),
            header_row=int(data["header_row"]),
            roles={str(k): int(v) for k, v in data["roles"].items()},
            decimal=data.get("decimal"),
            date_order=data.get("date_order"),
            sign=data.get("sign") or AS_WRITTEN,
            currency=data.get("currency"),
            account=data.get("account") or "",
            width=int(data.get("width") or len(data["header"])),
        )

    def settings(self) -> dict[str, str]:
        """What a profile keeps besides the roles: as answers (``answered`` takes them)."""
        out = {"sign": self.sign}
        for key in ("decimal", "date_order", "currency"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


def _bad(key: str, value: str, expected: str, kind: str = "value_error") -> ValidationFailedError:
    return ValidationFailedError(
        f"{key}={value!r} is not understood: expected {expected}",
        details=[{"loc": ["query", "map"], "msg": f"expected {expected}", "type": kind}],
    )
