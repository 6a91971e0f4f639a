"""The case report PDF: a summary table, spending by category (table and bar chart) and
monthly totals, rendered with fpdf2.

:func:`render_case_report` is a plain synchronous function of picklable data, so the
report job runs it in the worker's process pool (rendering is CPU-bound). It writes to a
temporary file and renames it into place: a reader never sees half a PDF, and an attempt
killed mid-render leaves no file behind under the final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fpdf import FPDF

CHART_BARS = 8
BAR_COLOR = (52, 101, 164)


def _text(value: object) -> str:
    """Latin-1 only (the PDF core fonts); anything else becomes '?'."""
    return str(value).encode("latin-1", "replace").decode("latin-1")


def money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


def render_case_report(data: dict[str, Any], path: str) -> dict[str, int]:
    """Render ``data`` (see :func:`casebook.tasks.report_data`) to a PDF at ``path``.

    Returns ``{"pages": n, "bytes": size}``. Creates the parent directory if needed.
    """
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(_text(data["title"]))
    pdf.set_author("casebook")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _text(data["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(
        0,
        6,
        _text(f"{data['organization']} - generated {data['generated_at']}"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(3)

    _heading(pdf, "Case")
    case = data["case"]
    with pdf.table(col_widths=(45, 135), first_row_as_headings=False) as table:
        for label, key in (
            ("Reference", "reference"),
            ("Title", "title"),
            ("Status", "status"),
            ("Opened on", "opened_on"),
            ("Assignee", "assignee"),
            ("Subjects", "subjects"),
            ("Transactions", "transactions"),
        ):
            row = table.row()
            row.cell(label)
            row.cell(_text(case.get(key) or "-"))

    categories = data["categories"]
    _heading(pdf, "By category")
    with pdf.table(
        col_widths=(50, 25, 50, 50), text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT")
    ) as table:
        header = table.row()
        for title in ("Category", "Count", "Debits", "Credits"):
            header.cell(title)
        for item in categories:
            row = table.row()
            row.cell(_text(item["category"]))
            row.cell(str(item["count"]))
            row.cell(money(item["debit_cents"]))
            row.cell(money(item["credit_cents"]))

    _heading(pdf, "Volume by category")
    _bar_chart(pdf, categories[:CHART_BARS])

    _heading(pdf, "By month")
    with pdf.table(col_widths=(40, 60, 60), text_align=("LEFT", "RIGHT", "RIGHT")) as table:
        header = table.row()
        for title in ("Month", "Debits", "Credits"):
            header.cell(title)
        for item in data["months"]:
            row = table.row()
            row.cell(_text(item["month"]))
            row.cell(money(item["debit_cents"]))
            row.cell(money(item["credit_cents"]))

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    pdf.output(str(partial))
    os.replace(partial, target)
    return {"pages": pdf.page_no(), "bytes": target.stat().st_size}


def _heading(pdf: FPDF, title: str) -> None:
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)


def _bar_chart(pdf: FPDF, items: list[dict[str, Any]]) -> None:
    """Horizontal bars of debits + credits per category, scaled to the largest."""
    if not items:
        pdf.cell(0, 6, "No transactions.", new_x="LMARGIN", new_y="NEXT")
        return
    totals = [item["debit_cents"] + item["credit_cents"] for item in items]
    largest = max(totals) or 1
    label_width, bar_width, height = 40.0, 110.0, 6.0
    left = pdf.l_margin
    pdf.set_fill_color(*BAR_COLOR)
    for item, total in zip(items, totals, strict=True):
        y = pdf.get_y()
        pdf.set_xy(left, y)
        pdf.cell(label_width, height, _text(item["category"]))
        width = max(bar_width * total / largest, 0.5)
        pdf.rect(left + label_width, y + 1, width, height - 2, style="F")
        pdf.set_xy(left + label_width + width + 2, y)
        pdf.cell(30, height, money(total), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
