"""The Organization page in Chromium (issue #15): an admin changes the report footer, then
generates a case report; the Reports tab shows the job done and the downloaded PDF carries
the footer. Analysts get no Organization page. Screenshot in build/screenshots/."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser, expect

from .pdf_runs import pdf_text
from .test_browser import SCREENSHOTS, browser, first_case_id, log_in, watch_errors

__all__ = ["browser"]  # the fixture, imported for pytest

FOOTER = "RESTRICTED - browser test footer"


def test_an_admin_sets_the_footer_and_the_report_prints_it(served: Any, browser: Browser) -> None:
    case_id = first_case_id(served.base)
    page = browser.new_page(locale="en-US", accept_downloads=True)
    page.set_default_timeout(30_000)
    problems = watch_errors(page)
    log_in(page, served.base, email="admin@acme.test")
    page.get_by_role("link", name="Organization").click()
    expect(page.get_by_role("heading", name="Organization", level=1)).to_be_visible()
    expect(page.get_by_label("Name")).to_have_value("Acme Forensics")
    page.get_by_label("Report footer (printed on every page)").fill(FOOTER)
    page.get_by_label("Default currency (ISO code)").fill("EUR")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#organization-message")).to_have_text("Settings saved.")
    expect(page.get_by_label("Report footer (printed on every page)")).to_have_value(FOOTER)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "organization.png", full_page=True)

    page.goto(f"{served.base}/app/cases/{case_id}/reports")
    page.get_by_role("button", name="Generate PDF report").click()
    row = page.locator("#report-rows tr").first
    expect(row).to_contain_text("ready", timeout=120_000)  # the job, on a shared machine
    with page.expect_download() as info:
        row.get_by_role("button", name="Download PDF").click()
    text = pdf_text(info.value.path().read_bytes())
    assert FOOTER in text
    assert "Data as of change-feed position" in text
    assert problems == []

    analyst = browser.new_page(locale="en-US")
    analyst.set_default_timeout(30_000)
    log_in(analyst, served.base, path="/app/organization")
    expect(analyst.get_by_role("link", name="Organization")).to_have_count(0)
    expect(analyst.get_by_role("heading", name="Page not found")).to_be_visible()
