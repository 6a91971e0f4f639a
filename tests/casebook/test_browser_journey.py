"""The whole journey of the casebook issue, in real browsers (one context per person),
against ``casebook serve``: an analyst creates a case, adds a subject with an account (a
wrong IBAN refused first) and its consent, imports a statement with a bad row,
sees the reject (nothing stored), imports the corrected file, sees the totals and flags two
transactions; a reviewer claims one, a second reviewer (the admin) cannot claim it, the
reviewer decides it; the four-eyes rule refuses the admin an item they flagged; an admin
deactivates a user whose open session then fails at its next step; the analyst's PDF
report holds the case number, the totals and the decisions; the case's audit tab shows
every step. Reload and Back keep the page at every step. Screenshots in
build/screenshots/journey-*.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from .pdf_runs import pdf_text
from .test_browser import SCREENSHOTS, api_token, browser, log_in, tab, watch_errors
from .test_browser_review import expected_refusals, flag

__all__ = ["browser"]  # the fixture, imported for pytest


def shot(page: Page, name: str) -> None:
    page.screenshot(path=SCREENSHOTS / f"journey-{name}.png", full_page=True)


def reload_keeps(page: Page, heading: str, level: int = 1) -> None:
    """A reload lands on the same page, drawn again."""
    url = page.url
    page.reload()
    expect(page.get_by_role("heading", name=heading, level=level)).to_be_visible()
    assert page.url == url


def test_the_casebook_journey(served: Any, browser: Browser, tmp_path: Path) -> None:
    base = served.base
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    contexts = [browser.new_context(locale="en-US", accept_downloads=True) for _ in range(4)]
    analyst, reviewer, admin, leaving = (c.new_page() for c in contexts)
    problems = {p: watch_errors(p) for p in (analyst, reviewer, admin, leaving)}
    for page in (analyst, reviewer, admin, leaving):
        page.set_default_timeout(30_000)

    # -- the analyst creates a case ------------------------------------------------------
    log_in(analyst, base)
    analyst.get_by_role("link", name="New case").click()
    expect(analyst.get_by_role("heading", name="New case")).to_be_visible()
    reload_keeps(analyst, "New case")
    form = analyst.get_by_role("form", name="New case")
    form.get_by_label("Reference").fill("JRN-0001")
    form.get_by_label("Title").fill("Journey: a shell company's round sums")
    form.get_by_label("Priority").select_option("2")
    form.get_by_role("button", name="Create case").click()
    expect(analyst.get_by_role("heading", name=re.compile("^JRN-0001"))).to_be_visible()
    case_url = re.sub(r"/subjects$", "", analyst.url)
    case_id = int(case_url.rsplit("/", 1)[-1])
    # A second case with the same reference is refused, and the form keeps what was typed.
    analyst.go_back()
    expect(analyst.get_by_role("heading", name="New case")).to_be_visible()
    form.get_by_label("Reference").fill("JRN-0001")
    form.get_by_label("Title").fill("a duplicate")
    form.get_by_role("button", name="Create case").click()
    expect(analyst.locator("#new-case-message").get_by_role("alert")).to_contain_text("409")
    expect(form.get_by_label("Title")).to_have_value("a duplicate")

    # -- a subject, an account it holds, its consent -----------------------------------
    analyst.goto(f"{case_url}/subjects")
    expect(analyst.get_by_role("heading", name="Subjects", level=2)).to_be_visible()
    expect(analyst.get_by_text("No subjects recorded for this case yet.")).to_be_visible()
    new_subject = analyst.get_by_role("form", name="New subject")
    new_subject.get_by_label("Name").fill("Blue Harbour Ltd")
    new_subject.get_by_label("Kind").select_option("company")
    new_subject.get_by_label("Identifier").fill("GB company 09876543")
    new_subject.get_by_label("Country").fill("gb")
    new_subject.get_by_label("Risk").select_option("4")
    new_subject.get_by_role("button", name="Add subject").click()
    subject_row = analyst.locator("#subject-rows tr", has_text="Blue Harbour Ltd")
    expect(subject_row).to_contain_text("no consent recorded")
    expect(subject_row).to_contain_text("GB company 09876543")
    account = analyst.get_by_role("form", name="Account for Blue Harbour Ltd")
    account.get_by_label("Institution").fill("Westminster Bank")
    account.get_by_label("IBAN or number").fill("GB82 WEST 1234 5698 7654 33")  # bad check
    account.get_by_role("button", name="Add account").click()
    expect(account.get_by_role("alert")).to_contain_text("422")
    account.get_by_label("IBAN or number").fill("GB82 WEST 1234 5698 7654 32")
    account.get_by_role("button", name="Add account").click()
    accounts = analyst.get_by_role("table", name="Accounts of Blue Harbour Ltd")
    expect(accounts.locator("tr", has_text="Westminster Bank")).to_contain_text("****5432")
    consent = analyst.get_by_role("form", name="Consent for Blue Harbour Ltd")
    consent.get_by_label("Legal basis").select_option("legal_obligation")
    consent.get_by_role("button", name="Record consent").click()
    expect(subject_row).to_contain_text("consent valid")
    reload_keeps(analyst, "Subjects", level=2)
    expect(subject_row).to_contain_text("consent valid")
    shot(analyst, "subjects")

    analyst.goto(f"{case_url}/imports")
    expect(analyst.get_by_role("heading", name="Imports", level=2)).to_be_visible()
    reload_keeps(analyst, "Imports", level=2)

    # -- a statement with a bad row: the good rows import, the bad one is shown ----------
    bad = tmp_path / "march.csv"
    bad.write_text(
        "date,amount,category,counterparty\n"
        "2026-03-02,-9900.00,transfers,Blue Harbour Ltd\n"
        "2026-03-03,-9950.00,transfers,Blue Harbour Ltd\n"
        "2026-03-04,12000.00,income,Nordic Pay\n"
        "2026-03-05,-99OO.00,transfers,Blue Harbour Ltd\n"
    )
    analyst.set_input_files("#import input[name=file]", str(bad))
    analyst.get_by_role("button", name="Import statement").click()
    analyst.get_by_role("button", name="Import", exact=True).click()
    expect(analyst.locator("#import-status")).to_contain_text("1 of 4 rows were rejected")
    rejects = analyst.locator("#import-rejects li")
    expect(rejects).to_have_count(1)
    expect(rejects.nth(0)).to_contain_text("row 5, amount: is not an amount (-99OO.00)")
    shot(analyst, "rejects")
    # Nothing of a rejected file is stored (all or nothing, the default policy).
    tab(analyst, "Overview")
    expect(analyst.get_by_text("No transactions in this case yet.")).to_be_visible()

    # -- the corrected file is imported: the totals change ------------------------------
    tab(analyst, "Imports")
    bad.write_text(bad.read_text().replace("-99OO.00", "-9900.00"))
    analyst.set_input_files("#import input[name=file]", str(bad))
    analyst.get_by_role("button", name="Import statement").click()
    analyst.get_by_role("button", name="Import", exact=True).click()
    expect(analyst.locator("#import-status")).to_have_text("imported 4 transactions")
    expect(analyst.locator("#import-history tr", has_text="imported")).to_have_count(1)
    tab(analyst, "Overview")
    expect(analyst.locator(".cards")).to_contain_text("EUR 29,750.00")
    expect(analyst.locator(".cards")).to_contain_text("EUR 12,000.00")
    reload_keeps(analyst, "Overview", level=2)
    shot(analyst, "overview")

    # -- the analyst flags two transactions -------------------------------------------------
    tab(analyst, "Transactions")
    expect(analyst.locator("#txn-rows tr")).to_have_count(4)
    flag(analyst, "journey A: just below the reporting threshold")
    flag(analyst, "journey B: a new counterparty")
    reload_keeps(analyst, "Transactions", level=2)
    expect(analyst.locator("#txn-rows .badge.flagged")).to_have_count(2)
    analyst.go_back()
    expect(analyst.get_by_role("heading", name="Overview", level=2)).to_be_visible()
    analyst.go_forward()
    expect(analyst.get_by_role("heading", name="Transactions", level=2)).to_be_visible()

    # -- a reviewer claims one; the second reviewer cannot; the reviewer decides ---------
    queue = f"/app/review?case={case_id}"
    log_in(reviewer, base, "reviewer@acme.test", queue)
    log_in(admin, base, "admin@acme.test", queue)
    for page in (reviewer, admin):
        expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
        expect(page.locator("main .page")).to_have_attribute("data-live", "subscribed")
    reload_keeps(reviewer, "Review queue")
    item_a = reviewer.locator("#queue-items tr", has_text="journey A")
    item_a.get_by_role("button", name="Claim").click()
    expect(item_a).to_contain_text("claimed by you until")
    admin_a = admin.locator("#queue-items tr", has_text="journey A")
    expect(admin_a).to_contain_text("claimed by Rui Reviewer until")  # live, no reload
    admin_a.get_by_role("button", name="Claim").click()
    expect(admin.locator("#review-message").get_by_role("alert")).to_contain_text("409")
    decide = item_a.get_by_role("form")
    decide.get_by_label("Outcome").select_option("suspicious")
    decide.get_by_label("Reason").fill("structuring: three transfers just below 10,000")
    decide.get_by_role("button", name="Decide").click()
    expect(item_a).to_have_count(0)
    expect(admin_a).to_have_count(0)
    shot(reviewer, "queue")

    # -- four-eyes: the admin may not review an item they flagged ----------------------
    admin.goto(f"{case_url}/transactions")
    expect(admin.locator("#txn-rows tr").first).to_be_visible()
    flag(admin, "journey C: flagged by the admin")
    admin.get_by_role("link", name="Open the review queue").click()
    item_c = admin.locator("#queue-items tr", has_text="journey C")
    item_c.get_by_role("button", name="Claim").click()
    refusal = admin.locator("#review-message").get_by_role("alert")
    expect(refusal).to_contain_text("four-eyes rule: you flagged this item")
    admin.go_back()
    expect(admin.get_by_role("heading", name="Transactions", level=2)).to_be_visible()

    # -- an admin deactivates a user; that user's open session fails at its next step ---
    admin_token = api_token(base, "admin@acme.test")
    created = httpx.post(
        f"{base}/api/v1/users",
        json={"email": "temp@acme.test", "full_name": "Terry Temp", "role": "analyst",
              "password": "a long first password"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    leaving.goto(base + f"/app/cases/{case_id}")
    leaving.get_by_label("E-mail").fill("temp@acme.test")
    leaving.get_by_label("Password").fill("a long first password")
    leaving.get_by_role("button", name="Log in").click()
    expect(leaving.get_by_role("heading", name=re.compile("^JRN-0001"))).to_be_visible()
    admin.goto(f"{base}/app/users")
    admin.get_by_role("button", name="Deactivate Terry Temp").click()
    expect(admin.locator("#user-rows tr", has_text="Terry Temp")).to_contain_text("deactivated")
    leaving.get_by_role("link", name="Transactions").click()
    expect(leaving.get_by_role("heading", name="Log in")).to_be_visible()
    shot(leaving, "deactivated")

    # -- a PDF report: the case, its totals and the decision -----------------------------
    tab(analyst, "Reports")
    analyst.get_by_role("button", name="Generate PDF report").click()
    report = analyst.locator("#report-rows tr").first
    expect(report).to_contain_text("ready", timeout=120_000)  # a job on a shared machine
    with analyst.expect_download() as info:
        report.get_by_role("button", name="Download PDF").click()
    text = " ".join(pdf_text(info.value.path().read_bytes()).split())  # cells wrap lines
    for expected in (
        "JRN-0001",
        "EUR 29,750.00",  # debits
        "EUR 12,000.00",  # credits
        "suspicious",
        "structuring: three transfers just below 10,000",
        "journey B: a new counterparty",  # still open
        "Blue Harbour Ltd valid",  # the subject's consent
    ):
        assert expected in text, expected

    # -- the audit tab shows every step, with who did it --------------------------------
    reviewer.goto(f"{case_url}/audit")
    rows = reviewer.locator("#audit-rows tr")
    expect(rows.filter(has_text="JRN-0001").filter(has_text="insert")).to_have_count(1)
    expect(rows.filter(has_text="journey A").filter(has_text="insert")).to_have_count(1)
    expect(rows.filter(has_text="journey B").filter(has_text="insert")).to_have_count(1)
    expect(rows.filter(has_text="outcome").filter(has_text="suspicious")).to_have_count(1)
    # An import is audited by its record and its row count, not row by row (docs/audit.md).
    expect(rows.filter(has_text="march.csv").first).to_be_visible()
    expect(rows.filter(has_text="Westminster Bank").filter(has_text="insert")).to_have_count(1)
    expect(rows.filter(has_text="legal_obligation").filter(has_text="insert")).to_have_count(1)
    expect(rows.filter(has_text="reports").first).to_be_visible()
    reload_keeps(reviewer, "Audit", level=2)
    shot(reviewer, "audit")

    for page, seen in problems.items():
        # Refusals the journey provokes (409 duplicate / claim, 403 four-eyes, 422 the
        # rejected file, the ended session's 401s) are logged by the browser; anything else
        # is a problem.
        unexpected = [p for p in expected_refusals(seen) if not re.search(r"status of 4(01|22)", p)]
        assert unexpected == [], (page.url, unexpected)
    for context in contexts:
        context.close()
