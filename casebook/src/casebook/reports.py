"""The case report PDF, rendered with fpdf2: the case, its totals, spending by category
(table and bar chart) and by month, the adjudication decisions and the items still open,
each subject's consent, the case's audit summary, and the change-feed position every figure
is as of (see :mod:`casebook.report_data`). Every page carries the organization's footer
(its classification text) and the page number; every amount is labelled with its currency.

:func:`render_case_report` is a plain synchronous function of picklable data, so the
report job runs it in the worker's process pool (rendering is CPU-bound). It writes to a
temporary file and renames it into place: a reader never sees half a PDF, and an attempt
killed mid-render leaves no file behind under the final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fpdf import FPDF, FontFace

CHART_BARS = 8
# A reason longer than this is cut (with "...") in the PDF; the web UI shows it whole.
REASON_CHARS = 240
BAR_COLOR = (52, 101, 164)
# The tables' colours: black text on light fills (WCAG contrast well above 4.5:1, tested).
TEXT_COLOR = (0, 0, 0)
HEADING_FILL = (214, 224, 238)
STRIPE_FILL = (243, 246, 250)
HEADINGS = FontFace(emphasis="BOLD", color=TEXT_COLOR, fill_color=HEADING_FILL)


def _text(value: object) -> str:
    """Latin-1 only (the PDF core fonts); anything else becomes '?'."""
    return str(value).encode("latin-1", "replace").decode("latin-1")


def money(cents: int, currency: str) -> str:
    """``-EUR 1,234.56``: the currency code, thousands separators, two decimals (the web
    UI's form)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{currency} {whole:,}.{frac:02d}".strip()


class _ReportPDF(FPDF):
    """A4 pages whose footer is the organization's text and the page number."""

    def __init__(self, footer: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.footer_text = footer

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(*TEXT_COLOR)
        self.cell(150, 6, _text(self.footer_text), align="L")
        self.cell(0, 6, f"Page {self.page_no()}/{{nb}}", align="R")


def render_case_report(data: dict[str, Any], path: str) -> dict[str, int]:
    """Render ``data`` (see :func:`casebook.report_data.report_data`) to a PDF at ``path``.

    Returns ``{"pages": n, "bytes": size}``. Creates the parent directory if needed.
    """
    pdf = _ReportPDF(data.get("footer") or "")
    pdf.set_title(_text(data["title"]))
    pdf.set_author("casebook")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 8, _text(data["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    as_of = data["as_of"]
    for line in (
        f"{data['organization']} - generated {data['generated_at']}",
        f"Data as of change-feed position {as_of['position']} (read {as_of['at']}, "
        "in the same snapshot as every figure below)",
        f"Cursor: {as_of['cursor']}",
    ):
        pdf.multi_cell(0, 5, _text(line), new_x="LMARGIN", new_y="NEXT")

    _heading(pdf, "Case")
    case = data["case"]
    with _table(pdf, (45, 135), headings=False) as table:
        for label, key in (
            ("Reference", "reference"),
            ("Title", "title"),
            ("Status", "status"),
            ("Opened on", "opened_on"),
            ("Assignee", "assignee"),
            ("Subjects", "subjects"),
            ("Transactions", "transactions"),
        ):
            value = case.get(key)
            _row(table, label, "-" if value in (None, "") else value)

    _heading(pdf, "Totals")
    totals = data["totals"] or [
        {"currency": data.get("currency", ""), "count": 0, "debit_cents": 0, "credit_cents": 0}
    ]
    with _table(pdf, (30, 30, 60, 60), align=("LEFT", "RIGHT", "RIGHT", "RIGHT")) as table:
        _row(table, "Currency", "Count", "Debits", "Credits")
        for t in totals:
            _row(
                table,
                t["currency"],
                f"{t['count']:,}",
                money(t["debit_cents"], t["currency"]),
                money(t["credit_cents"], t["currency"]),
            )

    categories = data["categories"]
    _heading(pdf, "By category")
    with _table(pdf, (50, 25, 52, 53), align=("LEFT", "RIGHT", "RIGHT", "RIGHT")) as table:
        _row(table, "Category", "Count", "Debits", "Credits")
        for item in categories:
            _row(
                table,
                item["category"],
                f"{item['count']:,}",
                money(item["debit_cents"], item["currency"]),
                money(item["credit_cents"], item["currency"]),
            )

    _heading(pdf, "Volume by category")
    _bar_chart(pdf, categories[:CHART_BARS])

    _heading(pdf, "By month")
    with _table(pdf, (40, 70, 70), align=("LEFT", "RIGHT", "RIGHT")) as table:
        _row(table, "Month", "Debits", "Credits")
        for item in data["months"]:
            _row(
                table,
                item["month"],
                money(item["debit_cents"], item["currency"]),
                money(item["credit_cents"], item["currency"]),
            )

    _adjudication(pdf, data)
    _consents(pdf, data["consents"])
    _audit(pdf, data["audit"])

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    pdf.output(str(partial))
    os.replace(partial, target)
    return {"pages": pdf.page_no(), "bytes": target.stat().st_size}


def _adjudication(pdf: FPDF, data: dict[str, Any]) -> None:
    _heading(pdf, f"Adjudication decisions ({data['decisions_total']:,})")
    if not data["decisions"]:
        _line(pdf, "No decisions yet.")
    else:
        with _table(
            pdf, (32, 30, 22, 50, 46), align=("LEFT", "RIGHT", "LEFT", "LEFT", "LEFT")
        ) as t:
            _row(t, "Transaction", "Amount", "Outcome", "Reason", "Reviewer, date")
            for d in data["decisions"]:
                _row(
                    t,
                    _transaction_label(d),
                    _amount(d),
                    d["outcome"],
                    _clip(d["reason"]),
                    f"{d['reviewer'] or '-'}, {d['decided_on']}",
                )
        _more(pdf, data["decisions_total"], len(data["decisions"]))
    _heading(pdf, f"Flagged items still open ({data['open_total']:,})")
    if not data["open_items"]:
        _line(pdf, "No flagged item is waiting for review.")
        return
    with _table(pdf, (32, 30, 18, 75, 25), align=("LEFT", "RIGHT", "RIGHT", "LEFT", "LEFT")) as t:
        _row(t, "Transaction", "Amount", "Priority", "Why flagged", "Flagged on")
        for item in data["open_items"]:
            _row(
                t,
                _transaction_label(item),
                _amount(item),
                item["priority"],
                _clip(item["reason"]),
                item["flagged_on"],
            )
    _more(pdf, data["open_total"], len(data["open_items"]))


def _consents(pdf: FPDF, consents: list[dict[str, Any]]) -> None:
    _heading(pdf, "Consent")
    if not consents:
        _line(pdf, "The case has no subjects.")
        return
    with _table(pdf, (120, 60)) as table:
        _row(table, "Subject", "Consent on the report date")
        for c in consents:
            _row(table, c["subject"], c["status"])


def _audit(pdf: FPDF, audit: dict[str, Any]) -> None:
    _heading(pdf, "Audit summary")
    if audit["counts"]:
        with _table(pdf, (70, 40, 40), align=("LEFT", "LEFT", "RIGHT")) as table:
            _row(table, "Table", "Action", "Entries")
            for c in audit["counts"]:
                _row(table, c["table"], c["op"], f"{c['count']:,}")
    else:
        _line(pdf, "No audit entries for this case.")
    head = audit["head_hash"] or "(empty chain)"
    _line(pdf, f"Audit chain head: entry {audit['head_seq']:,}, hash {head}")


def _transaction_label(item: dict[str, Any]) -> str:
    if item["transaction_id"] is None:
        return f"item {item['item_id']} (no transaction)"
    return f"#{item['transaction_id']} {item['posted_on']}"


def _amount(item: dict[str, Any]) -> str:
    cents = item["amount_cents"]
    return "-" if cents is None else money(cents, item["currency"])


def _clip(text: str) -> str:
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3].rstrip() + "..."


def _more(pdf: FPDF, total: int, shown: int) -> None:
    if total > shown:
        _line(pdf, f"... and {total - shown:,} more (listed in casebook).")


def _line(pdf: FPDF, text: str) -> None:
    pdf.multi_cell(0, 6, _text(text), new_x="LMARGIN", new_y="NEXT")


def _table(
    pdf: FPDF,
    widths: tuple[int, ...],
    *,
    align: tuple[str, ...] | str = "LEFT",
    headings: bool = True,
) -> Any:
    """A table in the report's colours (black text on light fills, striped rows)."""
    pdf.set_text_color(*TEXT_COLOR)
    return pdf.table(
        col_widths=widths,
        text_align=align,
        first_row_as_headings=headings,
        headings_style=HEADINGS,
        cell_fill_color=STRIPE_FILL,
        cell_fill_mode="ROWS",
        line_height=5,
    )


def _row(table: Any, *cells: object) -> None:
    row = table.row()
    for cell in cells:
        row.cell(_text(cell))


def _heading(pdf: FPDF, title: str) -> None:
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)


def _bar_chart(pdf: FPDF, items: list[dict[str, Any]]) -> None:
    """Horizontal bars of debits + credits per category (and currency), scaled to the
    largest."""
    if not items:
        _line(pdf, "No transactions.")
        return
    totals = [item["debit_cents"] + item["credit_cents"] for item in items]
    largest = max(totals) or 1
    label_width, bar_width, height = 40.0, 100.0, 6.0
    left = pdf.l_margin
    pdf.set_fill_color(*BAR_COLOR)
    for item, total in zip(items, totals, strict=True):
        y = pdf.get_y()
        pdf.set_xy(left, y)
        pdf.cell(label_width, height, _text(item["category"]))
        width = max(bar_width * total / largest, 0.5)
        pdf.rect(left + label_width, y + 1, width, height - 2, style="F")
        pdf.set_xy(left + label_width + width + 2, y)
        pdf.cell(40, height, money(total, item["currency"]), new_x="LMARGIN", new_y="NEXT")
    # The tables after the chart must not inherit its fill (dark behind black text).
    pdf.set_fill_color(255, 255, 255)
    pdf.ln(2)
