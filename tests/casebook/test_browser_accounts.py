"""Accounts, consent and counterparties in a real browser (issue #15): an analyst adds an
account to a subject, records consent and sees the subject's marker change, revokes it and
sees the marker come back, opens the account page (balance chart and ledger) and a
counterparty's drill-down; a reviewer is offered none of the forms. Screenshots in
build/screenshots/."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser, expect

from .test_browser import SCREENSHOTS, browser, log_in, watch_errors

__all__ = ["browser"]  # the fixture, imported for pytest


def test_account_consent_and_counterparty_drill_down(served: Any, browser: Browser) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    problems = watch_errors(page)
    log_in(page, served.base)
    page.locator("#case-rows tr a").first.click()
    page.get_by_role("navigation", name="Case sections").get_by_role(
        "link", name="Subjects"
    ).click()
    expect(page.locator("#subject-details section.subject").first).to_be_visible()

    section = page.locator("#subject-details section.subject").first
    form = section.locator("form[id^=acct-]")
    accounts = section.locator("table").first.locator("tbody tr")
    before = accounts.count()
    form.get_by_label("Institution").fill("Browser Bank")
    form.get_by_label("IBAN or number").fill("DE88 3704 0044 0532 0130 00")  # bad check digits
    form.get_by_role("button", name="Add account").click()
    expect(form.get_by_role("alert")).to_contain_text("check digits")
    assert [p for p in problems if "422" not in p] == [], problems
    problems.clear()  # the refused request is logged by the browser: expected here
    form.get_by_label("IBAN or number").fill("DE89 3704 0044 0532 0130 00")
    form.get_by_role("button", name="Add account").click()
    section = page.locator("#subject-details section.subject").first
    expect(section.locator("table").first.locator("tbody tr")).to_have_count(before + 1)
    expect(section.locator("tr", has_text="Browser Bank")).to_contain_text("****3000")

    # Consent: revoke whatever holds, then see "no valid consent"; record one, see it valid.
    def marker() -> Any:
        return page.locator("#subject-rows tr").first.locator("[data-consent]")

    section = page.locator("#subject-details section.subject").first
    revoke = section.get_by_role("button", name="Revoke")
    for left in reversed(range(revoke.count())):
        revoke.first.click()
        expect(revoke).to_have_count(left)
    expect(marker()).to_contain_text("⚠")
    section.get_by_label("Purpose").fill("browser consent")
    section.get_by_label("Legal basis").select_option("contract")
    section.get_by_label("Document").fill("DOC-B1")
    section.get_by_role("button", name="Record consent").click()
    expect(marker()).to_have_attribute("data-consent", "valid")
    expect(marker()).not_to_contain_text("⚠")
    section = page.locator("#subject-details section.subject").first
    expect(section.locator("tr", has_text="browser consent")).to_contain_text("contract")
    page.screenshot(path=SCREENSHOTS / "case-subjects-accounts.png", full_page=True)

    # The account page: balance chart and ledger, reached from the keyboard.
    link = section.get_by_role("link", name="Browser Bank")
    link.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#account-title")).to_contain_text("****3000")
    expect(page.get_by_text("No entries on this account yet.")).to_be_visible()
    page.go_back()
    seeded = page.locator("#subject-details section.subject").first.locator("table").first
    seeded.locator("tbody tr a").first.click()  # the seed's account has entries
    expect(page.locator("svg.chart[aria-label^='Monthly closing balance']")).to_be_visible()
    expect(page.locator("#balance-rows tr").first).to_contain_text("EUR")
    expect(page.locator("#txn-rows tr").first).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "account.png", full_page=True)

    # Counterparties: the list, then one name's drill-down with its ledger.
    page.go_back()
    page.get_by_role("navigation", name="Case sections").get_by_role(
        "link", name="Counterparties"
    ).click()
    rows = page.locator("#counterparty-rows tr")
    expect(rows.first).to_be_visible()
    first = rows.first.locator("a")
    name = first.inner_text()
    entries = int(rows.first.locator("td").nth(1).inner_text().replace(",", ""))
    first.click()
    expect(page.locator("#counterparty-name")).to_have_text(name)
    expect(page.locator("#counterparty-totals")).to_contain_text(f"{entries} entries")
    ledger = page.locator("#txn-rows tr")
    expect(ledger.first).to_be_visible()
    shown = min(entries, 50)
    expect(ledger).to_have_count(shown)
    for i in range(min(shown, 5)):
        expect(ledger.nth(i)).to_contain_text(name)
    page.screenshot(path=SCREENSHOTS / "case-counterparty.png", full_page=True)
    assert problems == [], problems


def test_a_reviewer_reads_accounts_and_consent_but_gets_no_forms(
    served: Any, browser: Browser
) -> None:
    page = browser.new_page(locale="en-US")
    page.set_default_timeout(30_000)
    problems = watch_errors(page)
    log_in(page, served.base, "reviewer@acme.test")
    page.locator("#case-rows tr a").first.click()
    page.get_by_role("navigation", name="Case sections").get_by_role(
        "link", name="Subjects"
    ).click()
    expect(page.locator("#subject-details section.subject").first).to_be_visible()
    expect(page.locator("#subject-rows [data-consent]").first).to_be_visible()
    assert page.locator("#subject-details form").count() == 0
    assert page.get_by_role("button", name="Revoke").count() == 0
    assert page.get_by_role("button", name="Edit…").count() == 0
    assert problems == [], problems
