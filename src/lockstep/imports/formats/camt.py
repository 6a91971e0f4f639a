"""ISO 20022 camt.053 (bank-to-customer statement, any version .001.02 to .001.13; camt.052
and camt.054 share the entry structure and read the same): one row per booked entry.

Written here with the standard library's streaming XML parser: the Python packages that
read camt.053 are pre-1.0, from one author, and far larger than the part an import needs
(the entry's amount, credit/debit indicator, dates, reference, counterparty, remittance
text). Pending entries (``Sts`` ``PDNG``/``INFO``) are not on the statement's balance and
are left out. A batch entry is imported as the one booked amount, its first transaction's
details describing it. Files declaring a DOCTYPE are refused (camt has none; entity
tricks live there).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from lockstep.exceptions import ValidationFailedError


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(element: ET.Element | None, path: str) -> ET.Element | None:
    """The first descendant along ``path`` (local names, "/"-separated), namespaces aside."""
    for name in path.split("/"):
        if element is None:
            return None
        element = next((c for c in element if _local(c.tag) == name), None)
    return element


def _text(element: ET.Element | None, path: str) -> str:
    found = _find(element, path)
    return (found.text or "").strip() if found is not None else ""


def _date(element: ET.Element | None, path: str) -> str:
    return (_text(element, path + "/Dt") or _text(element, path + "/DtTm"))[:10]


def _entry(entry: ET.Element) -> list[str] | None:
    status = _text(entry, "Sts") or _text(entry, "Sts/Cd")
    if status in ("PDNG", "INFO"):
        return None
    amount = _find(entry, "Amt")
    value = (amount.text or "").strip() if amount is not None else ""
    debit = _text(entry, "CdtDbtInd") == "DBIT"
    details = _find(entry, "NtryDtls/TxDtls")
    party = "Cdtr" if debit else "Dbtr"
    name = _text(details, f"RltdPties/{party}/Nm") or _text(details, f"RltdPties/{party}/Pty/Nm")
    account = _text(details, f"RltdPties/{party}Acct/Id/IBAN") or _text(
        details, f"RltdPties/{party}Acct/Id/Othr/Id"
    )
    remittance = " ".join(
        (c.text or "").strip()
        for c in (_find(details, "RmtInf") or [])
        if _local(c.tag) == "Ustrd" and c.text
    )
    kind = _text(entry, "BkTxCd/Prtry/Cd") or _text(entry, "BkTxCd/Domn/Fmly/SubFmlyCd")
    return [
        _date(entry, "BookgDt"),
        _date(entry, "ValDt"),
        ("-" if debit else "") + value,
        amount.get("Ccy", "") if amount is not None else "",
        name,
        account,
        remittance or _text(details, "AddtlTxInf") or _text(entry, "AddtlNtryInf"),
        _text(details, "Refs/EndToEndId") or _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef"),
        "",
        kind,
    ]


def parse(data: bytes) -> tuple[list[list[str]], str, str | None]:
    if b"<!DOCTYPE" in data[:4096].upper():
        raise ValidationFailedError("the XML file declares a DOCTYPE, which camt.053 never does")
    rows: list[list[str]] = []
    account, currency = "", None
    try:
        for _, element in ET.iterparse(io.BytesIO(data), events=("end",)):  # noqa: S314
            name = _local(element.tag)
            if name == "Ntry":
                row = _entry(element)
                if row is not None:
                    rows.append(row)
                element.clear()
            elif name == "Acct" and not account:
                account = _text(element, "Id/IBAN") or _text(element, "Id/Othr/Id")
                currency = _text(element, "Ccy") or None
    except ET.ParseError as exc:
        raise ValidationFailedError(f"the file is not well-formed XML: {exc}") from None
    if not account and not rows:
        raise ValidationFailedError("the XML file is not a camt.053 statement (no Stmt/Ntry)")
    return rows, account, currency
