"""Account identifiers: IBANs checked by their ISO 13616 checksum, and how they are masked.

Only the masked form is stored (``****1234``): a case needs to tell a subject's accounts
apart and match them with statements' last digits, not to hold full account numbers.
"""

from __future__ import annotations

import re

_SPACES = re.compile(r"[\s-]+")
# Two letters, two digits, then 11..30 letters or digits: what any country's IBAN looks like.
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_LOOKS_LIKE_IBAN = re.compile(r"[A-Za-z]{2}[0-9]{2}")


def compact(identifier: str) -> str:
    """The identifier without spaces or dashes."""
    return _SPACES.sub("", identifier)


def looks_like_iban(identifier: str) -> bool:
    """Starts like an IBAN (country letters, check digits) and is long enough to be one."""
    value = compact(identifier)
    return len(value) >= 15 and bool(_LOOKS_LIKE_IBAN.match(value))


def iban_is_valid(identifier: str) -> bool:
    """The IBAN's shape and its mod-97 checksum (ISO 7064) are right."""
    value = compact(identifier).upper()
    if not _IBAN.fullmatch(value):
        return False
    rearranged = value[4:] + value[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def mask(identifier: str) -> str:
    """``****`` and the last four characters (all of a shorter identifier is masked)."""
    value = compact(identifier).upper()
    return "****" + value[-4:] if len(value) > 4 else "****"
