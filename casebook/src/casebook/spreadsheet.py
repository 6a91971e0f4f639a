"""CSV cells a spreadsheet will not evaluate (CSV/formula injection).

Every CSV casebook writes holds text that came from outside — an uploaded statement's
values, a counterparty's name, an audit entry's before and after — and a spreadsheet opening
it evaluates a cell starting with ``=``, ``+``, ``-`` or ``@`` (and tab or CR, which some
strip first) as a formula: ``=HYPERLINK(...)`` or worse. :func:`inert` prefixes such a cell
with ``'`` so it stays text; a number (``-12.50``) is left as it is.
"""

from __future__ import annotations

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def inert(value: str) -> str:
    """``value`` as a cell no spreadsheet evaluates (see the module doc)."""
    if value.startswith(_FORMULA) and not _is_number(value):
        return "'" + value
    return value


def _is_number(value: str) -> bool:
    try:
        float(value.replace(",", "."))
    except ValueError:
        return False
    return True
