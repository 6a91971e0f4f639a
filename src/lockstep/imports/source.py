"""Where an import's records come from: a delimited text file, or a statement format
(OFX/QFX, ISO 20022 camt.053, SWIFT MT940, QIF) turned into records of the same kind.

Every source yields ``(line, cells)`` pairs, the first being its header. A statement
format's header is :data:`CANONICAL` (its cells: ISO dates, amounts with a dot, signed),
so the rest of the import reads it like any CSV file whose mapping needs no question.
The format is told by the file's first bytes, never by its name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass

from lockstep.exceptions import ValidationFailedError
from lockstep.imports import roles as r
from lockstep.imports.dialect import sniff
from lockstep.imports.spool import CountingReader, Spool

SAMPLE_BYTES = 1 << 16
CSV, OFX, CAMT053, MT940, QIF = "csv", "ofx", "camt.053", "mt940", "qif"

CANONICAL = (r.BOOKING_DATE, r.VALUE_DATE, r.AMOUNT, r.CURRENCY, r.COUNTERPARTY,
             r.COUNTERPARTY_ACCOUNT, r.DESCRIPTION, r.REFERENCE, r.BALANCE, r.KIND)  # fmt: skip

Records = Generator[tuple[int, list[str]], None, None]


@dataclass(slots=True)
class Source:
    """An opened file: its format, its delimiter (CSV only), its records (header first),
    and what a statement format says about the whole file."""

    format: str
    delimiter: str
    records: Records
    counter: CountingReader
    account: str = ""
    currency: str | None = None
    canonical: bool = False
    """Its cells are written as :data:`CANONICAL` says (ISO dates, dot decimals): nothing
    about them is left to decide."""

    def close(self) -> None:
        self.records.close()


def detect(head: bytes) -> str:
    """The format of a file from its first bytes."""
    text = head[:4096].decode("latin-1").lstrip("\ufeff\xef\xbb\xbf \r\n\t").upper()
    if text.startswith("OFXHEADER") or "<OFX>" in text[:2048]:
        return OFX
    if text.startswith("<?XML") or text.startswith("<DOCUMENT"):
        return CAMT053
    if text.startswith(("!TYPE:", "!ACCOUNT", "!OPTION")):
        return QIF
    if text.startswith("{1:") or (":20:" in text and ":25:" in text and ":61:" in text):
        return MT940
    return CSV


Parsed = tuple[list[list[str]], str, str | None]
"""A statement format's rows (in :data:`CANONICAL` order), its account and currency."""


def open_source(spool: Spool) -> Source:
    """Open ``spool``: its records from the first (the header) on. Raises
    ValidationFailedError when it is neither delimited text nor a known format."""
    with spool.open_binary() as raw:
        head = raw.read(SAMPLE_BYTES)
    kind = detect(head)
    if kind == CSV:
        return _delimited(spool, head)
    counter = CountingReader(spool.open_binary())
    with counter:
        data = counter.raw.read()
        counter.position = len(data)
    rows, account, currency = _parser(kind)(data)
    records = _numbered([list(CANONICAL), *rows])
    return Source(kind, "", records, counter, account, currency, canonical=kind != QIF)


def _parser(kind: str) -> Callable[[bytes], Parsed]:
    # Imported here: a format's parser (MT940's needs an extra) loads only when used.
    if kind == OFX:
        from lockstep.imports.formats.ofx import parse
    elif kind == CAMT053:
        from lockstep.imports.formats.camt import parse
    elif kind == MT940:
        from lockstep.imports.formats.mt940 import parse
    else:
        from lockstep.imports.formats.qif import parse
    return parse


def _numbered(rows: Iterable[list[str]]) -> Records:
    yield from enumerate(rows, start=1)


def _delimited(spool: Spool, head: bytes) -> Source:
    sample = head.decode(spool.encoding, errors="replace")
    dialect = sniff(sample.lstrip("\ufeff"))
    counter = CountingReader(spool.open_binary())
    buffered = io.BufferedReader(counter, buffer_size=SAMPLE_BYTES)
    text = io.TextIOWrapper(buffered, encoding=spool.encoding, newline="")
    reader = csv.reader(text, **dialect.reader_options())  # type: ignore[arg-type]

    def records() -> Records:
        line = 1
        try:
            for cells in reader:
                yield line, cells
                line = reader.line_num + 1
        except csv.Error as exc:  # a NUL byte, a field over the size limit
            raise ValidationFailedError(
                f"line {line} cannot be read as CSV: {exc}",
                details=[{"loc": ["file", line], "msg": str(exc), "type": "value_error"}],
            ) from None
        finally:
            text.close()

    return Source(CSV, dialect.delimiter, records(), counter)
