"""Which column of a bank statement holds what: its *role*, from the header's words in
English, German, French, Spanish, Italian, Dutch and Portuguese, checked against the
shapes of the column's values.

A header word proposes roles; the values dispose: ``Valuta`` is a value date in a German
export and a currency in an Italian one, and its cells (dates or ``EUR``) decide. A file
without a header (or a column whose name means nothing) gets roles from shapes alone:
the first date column is the booking date, a column of amounts the amount, and so on.
Every role is held by one column at most; a column by one role at most.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lockstep.imports import dates, numbers

BOOKING_DATE = "booking_date"
VALUE_DATE = "value_date"
AMOUNT = "amount"
DEBIT = "debit"
CREDIT = "credit"
DIRECTION = "direction"
CURRENCY = "currency"
COUNTERPARTY = "counterparty"
COUNTERPARTY_ACCOUNT = "counterparty_account"
DESCRIPTION = "description"
REFERENCE = "reference"
BALANCE = "balance"
CATEGORY = "category"
KIND = "kind"  # the bank's transaction type: card payment, transfer, direct debit...

ROLES = (BOOKING_DATE, VALUE_DATE, AMOUNT, DEBIT, CREDIT, DIRECTION, CURRENCY, COUNTERPARTY,
         COUNTERPARTY_ACCOUNT, DESCRIPTION, REFERENCE, BALANCE, CATEGORY, KIND)  # fmt: skip
DATE_ROLES = (BOOKING_DATE, VALUE_DATE)
MONEY_ROLES = (AMOUNT, DEBIT, CREDIT, BALANCE)

# Header words per role (lower case, accents removed, punctuation as spaces). A header
# equal to an entry scores highest; one that contains an entry as whole words scores less,
# the longer the entry the more.
VOCABULARY: dict[str, tuple[str, ...]] = {
    BOOKING_DATE: (
        "date", "transaction date", "booking date", "posting date", "posted date", "trans date",
        "completed date", "date posted", "started date", "txn date", "buchungstag",
        "buchungsdatum", "datum", "belegdatum", "date operation", "date de l operation",
        "date comptable", "date d operation", "fecha", "fecha operacion", "fecha contable",
        "f operacion", "data", "data operazione", "data contabile", "data registrazione",
        "transactiedatum", "boekdatum", "boekingsdatum", "data movimento", "data lancamento",
        "data do movimento", "data mov", "data transacao", "buchung", "date op",
    ),
    VALUE_DATE: (
        "value date", "valuta", "valutadatum", "wertstellung", "wertstellungsdatum",
        "valuta datum", "date de valeur", "date valeur", "fecha valor", "f valor",
        "data valuta", "rentedatum", "data valor", "data de valor", "date val", "dateval",
    ),
    AMOUNT: (
        "amount", "transaction amount", "betrag", "umsatz", "montant", "importe", "importo",
        "bedrag", "valor", "sum", "value", "amount in account currency", "net amount",
        "gross", "montante", "quantia", "importe eur", "betrag eur", "montant eur", "netto",
    ),
    DEBIT: (
        "debit", "debits", "debit amount", "withdrawal", "withdrawals", "withdrawal amount",
        "money out", "paid out", "out", "soll", "ausgang", "belastung", "debit eur",
        "cargo", "cargos", "addebiti", "addebito", "dare", "uscite", "uitgaven", "af",
        "debet", "debito", "saidas", "saida", "spent", "charges", "charge",
    ),
    CREDIT: (
        "credit", "credits", "credit amount", "deposit", "deposits", "deposit amount",
        "money in", "paid in", "in", "haben", "eingang", "gutschrift", "credit eur",
        "abono", "abonos", "accrediti", "accredito", "avere", "entrate", "inkomsten", "bij",
        "credito", "entradas", "entrada", "received", "payments",
    ),
    DIRECTION: (
        "debit credit", "credit debit", "dr cr", "cr dr", "af bij", "soll haben", "s h",
        "direction", "sens", "d c", "c d", "debit credit indicator", "cdtdbtind", "sign",
        "auswirkung auf guthaben",
    ),
    CURRENCY: (
        "currency", "ccy", "curr", "wahrung", "waehrung", "devise", "monnaie", "divisa",
        "moneda", "valuta", "munt", "moeda", "currency code",
    ),
    COUNTERPARTY: (
        "payee", "payer", "counterparty", "counter party", "beneficiary", "name", "merchant",
        "merchant name", "recipient", "to from", "from to", "payee name", "counterparty name",
        "beguenstigter zahlungspflichtiger", "auftraggeber begunstigter", "begunstigter",
        "zahlungsempfanger", "empfanger", "auftraggeber", "name bezeichnung",
        "zahlungspflichtiger", "beneficiaire", "tiers", "destinataire", "contrepartie",
        "beneficiario", "ordenante", "contraparte", "controparte", "naam", "tegenpartij",
        "naam omschrijving", "favorecido", "nome", "partner name",
    ),
    COUNTERPARTY_ACCOUNT: (
        "iban", "counterparty iban", "counter account", "counterparty account",
        "kontonummer iban", "kontonummer", "iban auftraggeberkonto", "iban zahlungsbeteiligter",
        "tegenrekening", "tegenrekening iban", "iban contrapartida", "conto controparte",
        "iban beneficiaire", "beneficiary account", "account number", "partner iban",
        "compte", "iban de la contrepartie", "conta",
    ),
    DESCRIPTION: (
        "description", "memo", "details", "narrative", "purpose", "verwendungszweck",
        "beschreibung", "libelle", "detail", "concepto", "descripcion", "causale",
        "descrizione", "omschrijving", "mededelingen", "descricao", "historico",
        "transaction details", "payment details", "notes", "note", "remarks", "particulars",
        "text", "transaction description", "libelle operation", "informations complementaires",
        "payment reference", "zahlungsreferenz", "observaciones", "descrizione operazione",
        "label", "buchungstext",
    ),
    REFERENCE: (
        "reference", "ref", "transaction id", "id", "check number", "cheque number",
        "check or slip", "referenz", "kundenreferenz", "end to end reference",
        "end to end id", "reference number", "reference de l operation", "referencia",
        "riferimento", "referentie", "kenmerk", "referencia da operacao", "numero documento",
        "receipt id", "transaction reference", "bank reference", "transaktionscode",
        "identificador", "transaktions nr",
    ),
    BALANCE: (
        "balance", "running balance", "saldo", "kontostand", "solde", "saldo contable",
        "saldo disponibile", "saldo na mutatie", "saldo apos", "saldo contabile",
        "balance eur", "saldo eur", "ledger balance", "account balance", "solde eur",
        "guthaben", "accountbalance", "disponible",
    ),
    CATEGORY: (
        "category", "kategorie", "categorie", "categoria", "category name", "rubrique",
        "moneymap",
    ),
    KIND: (
        "type", "typ", "transaction type", "buchungstext", "umsatzart", "buchungsart", "vorgang",
        "type d operation", "nature", "nature de l operation", "tipo", "tipo operacion",
        "tipologia", "mutatiesoort", "code", "tipo de movimento", "type de transaction",
        "transaction code", "tipo movimento", "product", "operation", "kind", "movimiento",
    ),
}  # fmt: skip

_WORDS = re.compile(r"[^a-z0-9]+")
_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=\d)")


def words(label: str) -> str:
    """``label`` in lower case, accents removed, punctuation as single spaces, camel case
    and a trailing number split off (``dateOp`` -> ``date op``, ``Text1`` -> ``text 1``)."""
    plain = unicodedata.normalize("NFKD", _BOUNDARY.sub(" ", label.strip()).lower())
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return _WORDS.sub(" ", plain.replace("ß", "ss")).strip()


def header_scores(label: str) -> dict[str, float]:
    """The roles a header label proposes, each with a score (higher is surer)."""
    text = words(label)
    if not text:
        return {}
    scores: dict[str, float] = {}
    padded = f" {text} "
    for role, entries in VOCABULARY.items():
        best = 0.0
        for rank, entry in enumerate(entries):
            if text == entry:
                best = max(best, 100.0 - rank / 100)  # the earlier entry, the surer
            elif f" {entry} " in padded:
                best = max(best, 10.0 + len(entry) / len(text))
        if best:
            scores[role] = best
    return scores


# What each role's cells look like: the share of non-empty cells of a shape it needs.
SHAPE_ROWS = 500
_DIRECTION_TOKENS = {
    "d", "c", "s", "h", "dr", "cr", "debit", "credit", "dbit", "crdt", "af", "bij", "soll",
    "haben", "debito", "credito", "out", "in",
}  # fmt: skip
_IBAN = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9 ]{10,34}$")
_CODE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class Shape:
    """The shapes of a column's sampled cells: shares of the non-empty ones."""

    filled: int
    date: float
    amount: float
    code: float
    iban: float
    direction: float
    negative: float
    mean_length: float

    @classmethod
    def of(cls, cells: Sequence[str]) -> Shape:
        """The shape of the first :data:`SHAPE_ROWS` cells, each distinct text judged once."""
        counts = Counter(v for v in (c.strip() for c in cells[:SHAPE_ROWS]) if v)
        n = sum(counts.values()) or 1

        def share(test: Callable[[str], object]) -> float:
            return sum(count for value, count in counts.items() if test(value)) / n

        amounts = {v: numbers.split(v) for v in counts}
        return cls(
            filled=sum(counts.values()),
            date=share(dates.is_date),
            amount=share(lambda v: amounts[v] is not None),
            code=share(_CODE.match),
            iban=share(lambda v: _IBAN.match(v.upper())),
            direction=share(lambda v: len(v) <= 8 and (words(v) in _DIRECTION_TOKENS or v in "+-")),
            negative=share(lambda v: getattr(amounts[v], "negative", False)),
            mean_length=sum(len(v) * c for v, c in counts.items()) / n,
        )

    def fits(self, role: str, share: float = 0.8) -> bool:
        """Whether cells of this shape can hold ``role``: ``share`` of them have its shape
        (an empty column fits anything but a booking date or an amount)."""
        if not self.filled:
            return role not in (BOOKING_DATE, AMOUNT)
        if role in DATE_ROLES:
            return self.date >= share
        if role in MONEY_ROLES:
            return self.amount >= share and self.date < 0.5
        if role == CURRENCY:
            return self.code >= share
        if role == DIRECTION:
            return self.direction >= share
        if role in (KIND, CATEGORY):  # short words: a long text is a description
            return self.date < 0.5 and self.mean_length <= 40
        if role in (COUNTERPARTY_ACCOUNT, REFERENCE):
            return self.date < 0.5
        return self.date < 0.5 and not (self.amount >= 0.8 and self.mean_length < 16)


def assign(header: Sequence[str], columns: Sequence[Sequence[str]]) -> dict[str, int]:
    """Role -> column index for a statement's ``header`` (empty strings when it has none)
    and sampled cells per column: header words first (checked against the cells' shapes),
    then shapes alone for the dates and money the header did not name."""
    shapes = [Shape.of(cells) for cells in columns]
    proposals: list[tuple[float, int, str]] = []
    for index, label in enumerate(header):
        for role, score in header_scores(label).items():
            # A header that names a role exactly needs half its cells of that shape (the
            # rest are bad rows, refused with reasons); a looser match needs most of them.
            if index < len(shapes) and shapes[index].fits(role, 0.5 if score >= 99 else 0.8):
                proposals.append((score, -index, role))
    roles: dict[str, int] = {}
    taken: set[int] = set()
    for _, negative_index, role in sorted(proposals, reverse=True):
        index = -negative_index
        if role not in roles and index not in taken:
            roles[role] = index
            taken.add(index)
    if AMOUNT in roles and (DEBIT in roles or CREDIT in roles):
        roles.pop(DEBIT, None)  # a signed amount says it all
        roles.pop(CREDIT, None)
    named = any(label.strip() for label in header)
    free = [i for i in range(len(shapes)) if i not in taken and shapes[i].filled]
    for role in DATE_ROLES:
        found = next((i for i in free if shapes[i].fits(role)), None)
        if role not in roles and found is not None and (role == BOOKING_DATE or not named):
            roles[role] = found
            free.remove(found)
    if AMOUNT not in roles and DEBIT not in roles and CREDIT not in roles:
        most = max(s.filled for s in shapes)
        money = [i for i in free if shapes[i].fits(AMOUNT) and shapes[i].filled >= 0.8 * most]
        if money:
            # Headerless or unnamed: the first money column is the amount; a second one
            # after it, the running balance.
            roles[AMOUNT] = money[0]
            free.remove(money[0])
            if len(money) > 1 and BALANCE not in roles:
                roles[BALANCE] = money[1]
                free.remove(money[1])
    if not named and DESCRIPTION not in roles:
        text = [i for i in free if shapes[i].fits(DESCRIPTION) and shapes[i].amount < 0.5]
        if text:
            roles[DESCRIPTION] = max(text, key=lambda i: shapes[i].mean_length)
    return roles
