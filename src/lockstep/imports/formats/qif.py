"""QIF (Quicken Interchange Format): the records of its bank, cash or card sections.

Written here: the format is a handful of one-letter line codes, and the maintained Python
parser (``quiffen``) brings pandas with it. QIF writes dates and amounts in the locale of
the program that exported them (``01/02'26``, ``1.234,56``), so this parser passes them on
as written: the import decides the day/month order and decimal mark per file like any
other, and asks when the file does not show them. Split lines (``S``/``$``) belong to
their transaction, which is imported whole.
"""

from __future__ import annotations

from lockstep.exceptions import ValidationFailedError

INVESTMENT = ("!type:invst", "!type:memorized", "!type:cat", "!type:class", "!type:prices")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def parse(data: bytes) -> tuple[list[list[str]], str, str | None]:
    rows: list[list[str]] = []
    record: dict[str, str] = {}
    skipping = False
    account = ""
    for raw in _decode(data).splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("!"):
            lowered = line.lower()
            skipping = lowered.startswith(INVESTMENT) or lowered.startswith("!account")
            if lowered.startswith("!option") or lowered.startswith("!clear"):
                skipping = False
            record = {}
            continue
        code, value = line[0], line[1:].strip()
        if skipping:
            if code == "N" and not account:
                account = value  # the name in an !Account block
            continue
        if code == "^":
            if record and not skipping:
                rows.append(
                    [
                        record.get("D", "").replace("'", "/").replace(" ", ""),
                        "",
                        record.get("T", record.get("U", "")),
                        "",
                        record.get("P", ""),
                        "",
                        record.get("M", ""),
                        record.get("N", ""),
                        "",
                        record.get("L", ""),
                    ]
                )
            record = {}
        elif code in "DTUPMNL" and code not in record:
            record[code] = value
    if not rows and record:
        raise ValidationFailedError("the QIF file's last record has no end (^)")
    return rows, account, None
