"""OFX / QFX (Open Financial Exchange 1.x SGML and 2.x XML; QFX is OFX with Quicken's
tags): the transactions of the file's bank or card statements.

Written here rather than taken from a library: ``ofxparse`` (MIT) has had no release since
2021, and ``ofxtools`` is GPL-3, which a MIT toolkit cannot depend on. What an import
needs is small: the ``STMTTRN`` aggregates (whose end tags OFX 1.x keeps even where it
drops those of leaf elements), the account and the default currency. Amounts are signed
as the bank writes them (negative: money out); a comma decimal mark, which some European
banks write in ``TRNAMT``, is read as a dot. Several statements in one file are read in
order; the account is the first one's.
"""

from __future__ import annotations

import html
import re

from lockstep.exceptions import ValidationFailedError

_BLOCK = re.compile(r"<STMTTRN>(.*?)</STMTTRN>", re.S | re.I)
_LEAF = re.compile(r"<([A-Z0-9.]+)>([^<\r\n]*)", re.I)
_ACCOUNT = re.compile(r"<(?:BANKACCTFROM|CCACCTFROM)>.*?<ACCTID>([^<\r\n]+)", re.S | re.I)
_CURRENCY = re.compile(r"<CURDEF>([A-Z]{3})", re.I)
_CHARSET = re.compile(r"^CHARSET:\s*(\S+)", re.M)
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.S)


def _text(data: bytes) -> str:
    head = data[:1024].decode("ascii", "replace")
    if 'encoding="UTF-8"' in head or "ENCODING:UTF-8" in head.upper():
        return data.decode("utf-8", "replace")
    charset = _CHARSET.search(head)
    if charset and charset.group(1).strip() in ("1252", "ISO-8859-1", "8859-1"):
        return data.decode("cp1252", "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _date(value: str) -> str:
    digits = value.strip()[:8]
    if len(digits) != 8 or not digits.isdigit():
        return value.strip()
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"


def _amount(value: str) -> str:
    text = value.strip().replace(" ", "")
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    return text


def parse(data: bytes) -> tuple[list[list[str]], str, str | None]:
    text = _CDATA.sub(lambda m: html.escape(m.group(1), quote=False), _text(data))
    blocks = _BLOCK.findall(text)
    if not blocks and "<OFX>" not in text.upper():
        raise ValidationFailedError("the file is not OFX: no <OFX> element")
    rows: list[list[str]] = []
    for block in blocks:
        leaf = {k.upper(): html.unescape(v).strip() for k, v in _LEAF.findall(block)}
        rows.append(
            [
                _date(leaf.get("DTPOSTED", "")),
                _date(leaf["DTAVAIL"]) if "DTAVAIL" in leaf else "",
                _amount(leaf.get("TRNAMT", "")),
                leaf.get("CURSYM", ""),
                leaf.get("NAME", "") or leaf.get("PAYEE", ""),
                leaf.get("ACCTID", ""),
                leaf.get("MEMO", ""),
                leaf.get("FITID", "") or leaf.get("REFNUM", "") or leaf.get("CHECKNUM", ""),
                "",
                leaf.get("TRNTYPE", "").lower(),
            ]
        )
    account = _ACCOUNT.search(text)
    currency = _CURRENCY.search(text)
    return (
        rows,
        account.group(1).strip() if account else "",
        currency.group(1).upper() if currency else None,
    )
