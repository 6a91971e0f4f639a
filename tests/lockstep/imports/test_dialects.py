"""Property: a statement generated in any supported dialect (delimiter, decimal mark,
grouping, date order and separators, two-digit years, sign convention, encoding, line
ends, header language, preamble, trailer) reads back to exactly its rows, asking only
what its cells cannot show; and an ambiguous file is never imported without a decision."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from lockstep import Settings, load_settings
from lockstep.db import Columns, Database
from lockstep.imports import Spool, ingest, layout, statement_schema, survey

from .reading import read

T = TypeVar("T")


def with_database(tmp_path: Path, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on a throwaway SQLite database (a hypothesis example at a time)."""

    async def run() -> T:
        db = Database(
            load_settings(
                Settings, database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db",
                data_dir=tmp_path, env="test", slow_query_ms=0,
            )
        )  # fmt: skip
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


HEADERS = {  # date, value date, text, amount, debit, credit, balance, direction
    "en": ("Date", "Value date", "Description", "Amount", "Debit", "Credit", "Balance", "Dr/Cr"),
    "de": ("Buchungstag", "Wertstellung", "Verwendungszweck", "Betrag", "Soll", "Haben",
           "Saldo", "Soll/Haben"),
    "fr": ("Date opération", "Date de valeur", "Libellé", "Montant", "Débit", "Crédit",
           "Solde", "Sens"),
    "es": ("Fecha", "Fecha valor", "Concepto", "Importe", "Cargo", "Abono", "Saldo", "D/C"),
    "it": ("Data operazione", "Data valuta", "Descrizione", "Importo", "Addebiti",
           "Accrediti", "Saldo", "D/C"),
    "nl": ("Datum", "Rentedatum", "Omschrijving", "Bedrag", "Af", "Bij", "Saldo", "Af Bij"),
    "pt": ("Data movimento", "Data valor", "Descrição", "Valor", "Débito", "Crédito",
           "Saldo", "D/C"),
}  # fmt: skip
TOKENS = {"en": ("DR", "CR"), "de": ("S", "H"), "nl": ("Af", "Bij")}


@dataclass(frozen=True)
class Row:
    day: dt.date
    cents: int
    text: str


@dataclass(frozen=True)
class Dialect:
    delimiter: str
    mark: str
    group: str
    order: str  # dmy, mdy, ymd
    separator: str
    short_year: bool
    sign: str  # signed, split, direction, card
    encoding: str
    newline: str
    language: str
    preamble: int
    trailer: bool
    balance: bool

    def amount(self, cents: int, unsigned: bool = False) -> str:
        value = abs(cents) if unsigned else cents
        whole, fraction = divmod(abs(value), 100)
        text = f"{whole:,}".replace(",", self.group) + f"{self.mark}{fraction:02d}"
        return ("-" if value < 0 else "") + text

    def date(self, day: dt.date) -> str:
        year = f"{day.year % 100:02d}" if self.short_year else str(day.year)
        if self.order == "ymd":
            return f"{day.year}-{day.month:02d}-{day.day:02d}"
        first, second = (day.day, day.month) if self.order == "dmy" else (day.month, day.day)
        return f"{first:02d}{self.separator}{second:02d}{self.separator}{year}"

    def render(self, rows: list[Row]) -> bytes:
        date, value, text, amount, debit, credit, balance, direction = HEADERS[self.language]
        header = [date, value, text]
        if self.sign == "split":
            header += [debit, credit]
        elif self.sign == "direction":
            header += [amount, direction]
        else:
            header += [amount]
        if self.balance:
            header.append(balance)
        lines = [[f"Account {i}", f"Statement line {i}"] for i in range(self.preamble)]
        lines += [[], header] if self.preamble else [header]
        running = 100_000
        out, into = TOKENS.get(self.language, ("D", "C"))
        for row in rows:
            running += row.cents
            cells = [self.date(row.day), self.date(row.day), row.text]
            if self.sign == "split":
                cells += [self.amount(row.cents, True), ""] if row.cents < 0 else [
                    "", self.amount(row.cents, True)]  # fmt: skip
            elif self.sign == "direction":
                cells += [self.amount(row.cents, True), out if row.cents < 0 else into]
            elif self.sign == "card":
                cells += [self.amount(-row.cents)]  # charges written positive
            else:
                cells += [self.amount(row.cents)]
            if self.balance:
                cells.append(self.amount(running))
            lines.append(cells)
        if self.trailer:
            lines.append(["Closing balance", "", "", self.amount(running)])
        quoted = [
            self.delimiter.join(f'"{c}"' if self.delimiter in c or '"' in c else c for c in line)
            for line in lines
        ]
        return (self.newline.join(quoted) + self.newline).encode(self.encoding)


@st.composite
def dialects(draw: st.DrawFn) -> Dialect:
    mark = draw(st.sampled_from((".", ",")))
    delimiter = draw(st.sampled_from((";", "\t", "|") if mark == "," else (",", ";", "\t", "|")))
    group = draw(
        st.sampled_from(("", " ", "'" if mark == "." else ".", "," if mark == "." else ""))
    )
    if group == delimiter:
        group = ""
    order = draw(st.sampled_from(("dmy", "mdy", "ymd")))
    separator = draw(st.sampled_from(("/", "-", ".") if order == "dmy" else ("/", "-")))
    return Dialect(
        delimiter=delimiter,
        mark=mark,
        group=group,
        order=order,
        separator=separator,
        short_year=draw(st.booleans()),
        sign=draw(st.sampled_from(("signed", "split", "direction", "card"))),
        encoding=draw(st.sampled_from(("utf-8", "utf-8-sig", "cp1252", "utf-16"))),
        newline=draw(st.sampled_from(("\n", "\r\n", "\r"))),
        language=draw(st.sampled_from(sorted(HEADERS))),
        preamble=draw(st.integers(0, 3)),
        trailer=draw(st.booleans()),
        balance=draw(st.booleans()),
    )


TEXT = st.builds(  # a payee or purpose: words, sometimes with numbers
    lambda first, rest: (first + rest).strip(),
    st.sampled_from("ABCDEFGHIJäéñ"),
    st.text(alphabet="ABCDEFGHIJ abcdefghij0123456789äéñ-.", max_size=20),
)
ROWS = st.lists(
    st.builds(
        Row,
        st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31)),
        st.integers(-(10**8), 10**8).filter(bool),
        TEXT,
    ),
    min_size=1,
    max_size=12,
)


def truth(dialect: Dialect, rows: list[Row]) -> dict[str, str]:
    """The answers a person who knows the file gives."""
    sign = "inverted" if dialect.sign == "card" else "as_written"
    answers = {"decimal": dialect.mark, "sign": sign}
    if dialect.order != "ymd":
        answers["date_order"] = dialect.order
    return answers


FIXTURES = [HealthCheck.function_scoped_fixture]  # tmp_path: overwritten by each example


@given(dialect=dialects(), rows=ROWS)
@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURES)
def test_a_statement_in_any_dialect_reads_back_to_its_rows(
    dialect: Dialect, rows: list[Row], tmp_path: Path
) -> None:
    # A card statement is mostly charges: one mostly of refunds reads like an account's.
    assume(dialect.sign != "card" or sum(r.cents < 0 for r in rows) * 2 > len(rows))
    path = tmp_path / "statement.csv"
    path.write_bytes(dialect.render(rows))
    found = survey(Spool.of_path(path), full=True)
    asked = {q.key for q in found.questions}
    # Only what the cells cannot show is asked.
    numeric = dialect.order != "ymd" and dialect.separator != "."
    if "date_order" in asked:
        assert numeric
        assert all(r.day.day <= 12 for r in rows)
    elif numeric and any(r.day.day > 12 and r.day.day != r.day.month for r in rows):
        assert found.mapping.date_order == dialect.order
    if "decimal" in asked:
        assert all(abs(r.cents) % 100 == 0 or dialect.group for r in rows)
    elif found.mapping.decimal is not None:
        assert found.mapping.decimal == dialect.mark
    if dialect.sign in ("split", "direction"):
        assert "sign" not in asked
    if dialect.sign == "card" and sum(r.cents < 0 for r in rows) * 2 > len(rows):
        # Mostly positive as written: asked, unless the running balance proves it inverted.
        assert "sign" in asked or (dialect.balance and found.mapping.sign == "inverted")
    if "sign" not in asked:
        assert found.mapping.sign == ("inverted" if dialect.sign == "card" else "as_written")
    got = with_database(tmp_path, lambda db: read(db, path, truth(dialect, rows)))
    assert got.outcome.rows_rejected == 0, got.outcome.rejects[:3]
    assert [(r["booking_date"], r["amount"]) for r in got.rows] == [(r.day, r.cents) for r in rows]
    assert [r["description"] for r in got.rows] == [r.text for r in rows]
    assert len(got.outcome.trailer) == int(dialect.trailer)
    assert got.balance.count == 0


@given(
    days=st.lists(st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)), min_size=1, max_size=8).map(
        lambda days: [d.replace(day=min(d.day, 12)) for d in days]
    ),
    separator=st.sampled_from(("/", "-")),
)
@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURES)
def test_an_ambiguous_file_is_never_imported_without_a_decision(
    days: list[dt.date], separator: str, tmp_path: Path
) -> None:
    lines = ["Date,Amount"] + [
        f"{d.day:02d}{separator}{d.month:02d}{separator}{d.year},-1.50" for d in days
    ]
    path = tmp_path / "ambiguous.csv"
    path.write_text("\n".join(lines) + "\n")
    found = survey(Spool.of_path(path), full=True)
    if any(d.day != d.month for d in days):
        assert "date_order" in {q.key for q in found.questions}
        # Read anyway, without the answer: every such row is refused, none is guessed.

        async def nothing(session: AsyncSession, batch: Columns) -> None:
            raise AssertionError("a row was written")

        def unanswered(db: Database) -> Awaitable[Any]:
            schema = statement_schema(found.mapping)
            return ingest(db, Spool.of_path(path), schema, nothing, **layout(found.mapping))

        outcome = with_database(tmp_path, unanswered)
        assert not outcome.committed
        assert outcome.rows_rejected == sum(d.day != d.month for d in days)
