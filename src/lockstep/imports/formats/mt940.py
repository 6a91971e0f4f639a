"""SWIFT MT940 (customer statement message), including the German ``?20``-structured
``:86:`` fields: through the ``mt-940`` package (BSD-3, maintained), installed with the
``lockstep[mt940]`` extra.

The booking date is the ``:61:`` entry date (the value date when it has none); the amount
is signed by its debit/credit mark (reversals ``RD``/``RC`` as the mark says).
"""

from __future__ import annotations

from typing import Any

from lockstep.exceptions import ConfigurationError, ValidationFailedError


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def parse(data: bytes) -> tuple[list[list[str]], str, str | None]:
    try:
        import mt940
    except ImportError:  # pragma: no cover - the extra is installed in the test suite
        raise ConfigurationError(
            "reading MT940 needs the mt940 extra: pip install 'lockstep[mt940]'"
        ) from None
    try:
        statement = mt940.models.Transactions()
        statement.parse(_decode(data))
    except Exception as exc:  # the parser raises bare exceptions on malformed input
        raise ValidationFailedError(f"the MT940 file could not be read: {exc}") from None
    rows: list[list[str]] = []
    currency = None
    for transaction in statement:
        d = transaction.data
        amount = d.get("amount")
        currency = currency or (amount.currency if amount is not None else None)
        booked = d.get("entry_date") or d.get("date")
        text = " ".join(
            str(d[k]) for k in ("purpose", "additional_purpose", "transaction_details") if d.get(k)
        )
        rows.append(
            [
                _iso(booked),
                _iso(d.get("date")),
                str(amount.amount) if amount is not None else "",
                amount.currency if amount is not None else "",
                str(d.get("applicant_name") or d.get("recipient_name") or ""),
                str(d.get("applicant_iban") or ""),
                text,
                str(d.get("customer_reference") or d.get("bank_reference") or ""),
                "",
                str(d.get("posting_text") or d.get("id") or ""),
            ]
        )
    account = str(statement.data.get("account_identification") or "")
    return rows, account, currency
