"""Which delimiter a CSV file uses, decided from its first lines.

For each candidate (``,`` ``;`` tab ``|``) the sample is parsed as CSV (quotes respected);
the winner gives the most records of one width (two fields or more), then the widest: a
bank's preamble lines (account, period, blank lines) and trailing summary lines do not
count against the table below them. ``csv.Sniffer`` guesses from character frequencies and
is easily fooled by commas inside quoted text or decimal commas; counting whole records
is not.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass

from lockstep.exceptions import ValidationFailedError

CANDIDATES = (",", ";", "\t", "|")
SAMPLE_LINES = 50


@dataclass(frozen=True, slots=True)
class Dialect:
    delimiter: str
    quotechar: str = '"'

    def reader_options(self) -> dict[str, object]:
        return {
            "delimiter": self.delimiter,
            "quotechar": self.quotechar,
            "doublequote": True,
            "skipinitialspace": False,
            "strict": False,
        }


def sniff(sample: str) -> Dialect:
    """The dialect of ``sample`` (the beginning of the file, whole lines preferred).

    Raises ValidationFailedError when no candidate splits the header into two or more
    fields consistently (not a delimited file).
    """
    lines = sample.splitlines(keepends=True)
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line may be cut off mid-record
    # The lines as split (\r, \n or \r\n: CR-only files are common from older software),
    # not a StringIO, which only splits on \n.
    sampled = lines[:SAMPLE_LINES]
    best: tuple[int, int, str] | None = None
    for delimiter in CANDIDATES:
        widths = Counter(len(r) for r in csv.reader(sampled, delimiter=delimiter) if any(r))
        tables = [(count, width) for width, count in widths.items() if width >= 2]
        if not tables:
            continue
        count, width = max(tables)
        if best is None or (count, width) > best[:2]:
            best = (count, width, delimiter)
    if best is None:
        raise ValidationFailedError(
            "the file does not look like CSV: no delimiter (comma, semicolon, tab or pipe) "
            "splits its header into columns",
            details=[{"loc": ["file"], "msg": "no delimiter found", "type": "value_error"}],
        )
    return Dialect(best[2])
