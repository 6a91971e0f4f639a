"""Column roles from header words in seven languages, checked against the cells' shapes."""

from __future__ import annotations

import pytest

from lockstep.imports.roles import assign, header_scores, words


@pytest.mark.parametrize(
    ("label", "role"),
    [
        ("Transaction Date", "booking_date"),
        ("Buchungstag", "booking_date"),
        ("Date de l'opération", "booking_date"),
        ("Fecha", "booking_date"),
        ("Data operazione", "booking_date"),
        ("Boekdatum", "booking_date"),
        ("Data Lançamento", "booking_date"),
        ("Date de valeur", "value_date"),
        ("Wertstellung", "value_date"),
        ("Amount (EUR)", "amount"),
        ("Betrag", "amount"),
        ("Montant", "amount"),
        ("Importe", "amount"),
        ("Importo", "amount"),
        ("Bedrag", "amount"),
        ("Montante", "amount"),
        ("Money Out", "debit"),
        ("Soll", "debit"),
        ("Débit euros", "debit"),
        ("Cargo", "debit"),
        ("Uscite", "debit"),
        ("Af", "debit"),
        ("Débito", "debit"),
        ("Haben", "credit"),
        ("Abono", "credit"),
        ("Af Bij", "direction"),
        ("Währung", "currency"),
        ("Auftraggeber / Begünstigter", "counterparty"),
        ("Tegenrekening", "counterparty_account"),
        ("Verwendungszweck", "description"),
        ("Libellé", "description"),
        ("Saldo", "balance"),
        ("Solde", "balance"),
        ("Kategorie", "category"),
        ("Buchungstext", "kind"),
    ],
)
def test_header_words_propose_the_role(label: str, role: str) -> None:
    scores = header_scores(label)
    assert max(scores, key=lambda r: scores[r]) == role, scores


def test_words_split_camel_case_and_numbers() -> None:
    assert words("dateOp") == "date op"
    assert words("Beschreibung1") == "beschreibung 1"
    assert words("  Zahlungsempfänger*in ") == "zahlungsempfanger in"


def test_the_cells_decide_between_the_roles_a_word_may_name() -> None:
    # "Valuta" is a value date in a German export and a currency in an Italian one.
    german = assign(["Datum", "Valuta", "Betrag"], [["01.02.2026"], ["02.02.2026"], ["-5,00"]])
    assert german["value_date"] == 1
    italian = assign(["Data", "Valuta", "Importo"], [["01/02/2026"], ["EUR"], ["-5,00"]])
    assert italian["currency"] == 1


def test_a_headerless_file_gets_roles_from_shapes() -> None:
    roles = assign(
        ["", "", "", ""],
        [["10/01/2025", "10/03/2025"], ["-45.00", "1500.00"], ["*", "*"], ["SAFEWAY", "ACME"]],
    )
    assert roles == {"booking_date": 0, "amount": 1, "description": 3}


def test_a_signed_amount_leaves_debit_and_credit_unassigned() -> None:
    roles = assign(
        ["Date", "Amount", "Money Out", "Money In"],
        [["01/11/2025"], ["-4.50"], ["-4.50"], [""]],
    )
    assert "amount" in roles
    assert "debit" not in roles
    assert "credit" not in roles
