"""The web UI in a real browser (Debian's Chromium through Playwright) against ``casebook
serve``: log in, open a case, read its dashboard, import a statement through the mapping
page (and see a bad one refused with its rejects); an unknown bank's statement: mapping
page, one column corrected, profile saved, imported; the bank's next file imports with no
questions. Real URLs: a deep link survives login and reload, Back and Forward move between
pages; a reviewer is offered no import form; amounts are formatted; every page renders
without a console error (screenshots in build/screenshots/)."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from casebook.seed import DEMO_PASSWORD

CHROMIUM = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")


def chromium_path() -> str:
    for candidate in CHROMIUM:
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    message = "no Chromium binary (apt-get install chromium)"
    if os.environ.get("CI", "").strip().lower() in ("true", "1"):
        pytest.fail(f"{message} (CI=true: a missing browser fails the run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        yield launched
        launched.close()


def log_in(page: Page, base: str, email: str = "analyst@acme.test", path: str = "/") -> None:
    page.goto(base + path)
    page.get_by_label("E-mail").fill(email)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login")).to_have_count(0)  # the form is gone, not just covered


def open_first_case(page: Page, base: str) -> None:
    log_in(page, base)  # the demo user is filled in
    page.locator("#case-rows tr a").first.click()
    expect(page.locator("#dashboard-rows tr").first).to_be_visible()


def tab(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Case sections").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, level=2)).to_be_visible()


def test_import_a_statement_from_the_case_page(
    served: Any, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_default_timeout(30_000)
    open_first_case(page, served.base)
    assert page.get_by_role("cell", name="browser-test").count() == 0
    tab(page, "Imports")

    statement = tmp_path / "statement.csv"
    statement.write_text(
        "Date;Amount;Category;Payee\n"
        "2026-03-01;-1.234,50;browser-test;Café Müller\n"
        "2026-03-02;89,99;browser-test;Northwind\n"
    )
    page.set_input_files("#import input[name=file]", str(statement))
    page.get_by_role("button", name="Import statement").click()
    mapping = page.get_by_role("form", name="Mapping")
    expect(mapping).to_be_visible()
    expect(page.get_by_label("amount column")).to_have_value("Amount")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-status")).to_have_text("imported 2 transactions")
    expect(page.locator("#import-history tr", has_text="statement.csv")).to_contain_text("imported")
    # The dashboard and the ledger show it: the new category is there, by direction.
    tab(page, "Overview")
    expect(page.locator("#dashboard-rows tr", has_text="browser-test")).to_have_count(2)
    tab(page, "Transactions")
    expect(page.locator("#txn-rows tr", has_text="Café Müller")).to_have_count(1)
    expect(page.locator("#txn-rows tr", has_text="Café Müller")).to_contain_text("EUR 1,234.50")
    tab(page, "Imports")

    bad = tmp_path / "bad.csv"
    bad.write_text("date,amount,category\n2026-03-03,-4,browser-test\n2026-03-04,x,browser-test\n")
    page.set_input_files("#import input[name=file]", str(bad))
    page.get_by_role("button", name="Import statement").click()
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-status")).to_contain_text("1 of 2 rows were rejected")
    rejects = page.locator("#import-rejects li")
    expect(rejects).to_have_count(1)
    expect(rejects.nth(0)).to_contain_text("row 3, amount: is not an amount (x)")
    tab(page, "Overview")
    expect(page.locator("#dashboard-rows tr", has_text="browser-test")).to_have_count(2)


AMEX = Path(__file__).parents[1] / "corpus" / "us-amex.csv"


def test_an_unknown_banks_statement_is_mapped_once_and_its_next_file_asks_nothing(
    served: Any, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_default_timeout(30_000)
    open_first_case(page, served.base)
    tab(page, "Imports")
    page.set_input_files("#import input[name=file]", str(AMEX))
    page.get_by_role("button", name="Import statement").click()
    # The mapping page: what was found, and the one thing it will not guess.
    expect(page.get_by_role("form", name="Mapping")).to_be_visible()
    expect(page.locator("#mapping-questions li")).to_contain_text(["Most amounts are positive"])
    expect(page.get_by_label("description column", exact=True)).to_have_value("Description")
    expect(page.locator("#mapping-rows tr").first).to_contain_text("UBER TRIP")
    # No currency is known yet: the amount shows without a code.
    expect(page.locator("#mapping-rows tr").first).to_contain_text("23.17")
    page.get_by_label("counterparty column", exact=True).select_option("Description")  # correct one
    page.get_by_label("Sign", exact=True).select_option("inverted")
    page.get_by_label("Currency", exact=True).fill("USD")
    page.get_by_label("Save as profile").fill("Amex card")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-status")).to_have_text("imported 4 transactions")
    tab(page, "Transactions")
    expect(page.locator("#txn-rows tr", has_text="DELTA AIR LINES")).to_contain_text("debit")
    expect(page.locator("#txn-rows tr", has_text="DELTA AIR LINES")).to_contain_text("USD")
    tab(page, "Imports")

    # November's statement of the same card: recognised by its header, no questions.
    november = tmp_path / "amex-november.csv"
    november.write_text(
        "Date,Description,Amount\n11/03/2025,LYFT RIDE,12.40\n11/19/2025,AUTOPAY PAYMENT,-50.00\n"
    )
    page.set_input_files("#import input[name=file]", str(november))
    page.get_by_role("button", name="Import statement").click()
    expect(page.locator("#import-status")).to_have_text("imported 2 transactions")
    expect(page.get_by_role("form", name="Mapping")).to_be_hidden()
    tab(page, "Transactions")
    expect(page.locator("#txn-rows tr", has_text="LYFT RIDE")).to_contain_text("debit")


def test_api_docs_render_offline_under_the_csp(served: Any, browser: Browser) -> None:
    """Swagger UI comes from the installed package, boots from a script file, and the
    page's CSP (no CDN, no inline script) refuses nothing it needs."""
    page = browser.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security" in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if "127.0.0.1" not in r.url else None)
    page.goto(f"{served.base}/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() >= 30
    assert problems == []
    assert external == []


SCREENSHOTS = Path(__file__).parents[2] / "build" / "screenshots"


def api_token(base: str, email: str) -> str:
    response = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def first_case_id(base: str) -> int:
    headers = {"Authorization": f"Bearer {api_token(base, 'analyst@acme.test')}"}
    cases = httpx.get(f"{base}/api/v1/cases?limit=1", headers=headers).json()
    return int(cases["items"][0]["id"])


def watch_errors(page: Page) -> list[str]:
    """Uncaught exceptions and console errors of the page, as they happen."""
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on(
        "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
    )
    return problems


def test_a_deep_link_survives_login_and_reload_and_back_and_forward_move_between_pages(
    served: Any, browser: Browser
) -> None:
    case_id = first_case_id(served.base)
    page = browser.new_page(locale="en-US")
    page.set_default_timeout(30_000)
    deep = f"/app/cases/{case_id}/transactions?direction=credit"
    log_in(page, served.base, path=deep)  # the login keeps the address it was asked for
    expect(page.get_by_role("heading", name="Transactions", level=2)).to_be_visible()
    expect(page.locator("#txn-rows tr").first).to_contain_text("credit")
    assert page.url == served.base + deep

    page.reload()
    expect(page.get_by_role("heading", name="Transactions", level=2)).to_be_visible()
    expect(page.get_by_label("Direction")).to_have_value("credit")
    assert page.url == served.base + deep

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    tab_link = page.locator("#case-title")
    page.go_back()
    expect(page.get_by_role("heading", name="Transactions", level=2)).to_be_visible()
    expect(tab_link).to_be_visible()
    assert page.url == served.base + deep
    page.go_forward()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    assert page.url == f"{served.base}/app/dashboard"
    # Drill-down steps are addresses too: a month, then a category, then Back.
    page.locator("svg a").first.click()
    expect(page.locator("#categories-title")).to_contain_text("Categories in")
    page.locator("svg a").last.click()
    expect(page.locator("#drill-rows tr").first).to_be_visible()
    page.go_back()
    expect(page.locator("#drill-rows")).to_have_count(0)
    expect(page.locator("#categories-title")).to_contain_text("Categories in")


def test_a_reviewer_is_not_offered_what_a_reviewer_may_not_do(
    served: Any, browser: Browser
) -> None:
    case_id = first_case_id(served.base)
    page = browser.new_page(locale="en-US")
    page.set_default_timeout(30_000)
    problems = watch_errors(page)
    log_in(page, served.base, "reviewer@acme.test", f"/app/cases/{case_id}/imports")
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    expect(page.get_by_text("No statement imported into this case yet.")).to_be_visible()
    expect(page.locator("#import")).to_have_count(0)
    expect(page.get_by_role("button", name="Import statement")).to_have_count(0)
    tab(page, "Reports")
    expect(page.get_by_role("button", name="Generate PDF report")).to_have_count(0)
    # No edit form for the case (lockstep.js's outbox), no notes to edit: the server would
    # refuse them (analyst or admin role required).
    expect(page.get_by_role("form", name="Edit case")).to_have_count(0)
    tab(page, "Subjects")
    expect(page.locator("#subject-rows")).to_be_visible()
    expect(page.get_by_role("button", name="Save notes")).to_have_count(0)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Cases", "Dashboard", "Review queue"])
    page.goto(f"{served.base}/app/operator")  # the address exists; the role does not open it
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    # Logging out ends the session: Back shows the login, not the pages seen before.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.go_back()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("#import-history")).to_have_count(0)
    assert problems == []


def test_amounts_have_separators_and_currency_and_errors_are_readable(
    served: Any, browser: Browser
) -> None:
    page = browser.new_page(locale="en-US")
    page.set_default_timeout(30_000)
    open_first_case(page, served.base)
    amount = re.compile(r"^-?EUR\s\d{1,3}(,\d{3})*\.\d\d$")
    for cell in page.locator("#dashboard-rows td.num").all_inner_texts()[1::3]:
        assert amount.match(cell), cell  # the Total column
    for text in page.locator(".stat strong").all_inner_texts():
        assert amount.match(text), text
    expect(page.locator("main")).not_to_contain_text(re.compile(r"\d\.\d\d EUR"))
    # A dates column reads "1 Mar 2026", one format everywhere.
    first = page.locator("#dashboard-rows tr").first.locator("td").nth(5).inner_text()
    assert re.match(r"^\d{1,2} [A-Z][a-z]{2,3} \d{4}$", first), first
    # The error envelope, readably: the message, the status and code, the request id.
    page.goto(f"{served.base}/app/cases/2147483000")
    expect(page.get_by_role("heading", name="Case not found")).to_be_visible()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("case 2147483000 not found")
    expect(alert).to_contain_text("404 not_found · request ")


def test_a_report_is_generated_with_live_progress_and_downloaded(
    served: Any, browser: Browser
) -> None:
    case_id = first_case_id(served.base)
    page = browser.new_page(locale="en-US", accept_downloads=True)
    page.set_default_timeout(30_000)
    log_in(page, served.base, path=f"/app/cases/{case_id}/reports")
    expect(page.get_by_text("No report generated for this case yet.")).to_be_visible()
    page.get_by_role("button", name="Generate PDF report").click()
    row = page.locator("#report-rows tr").first
    expect(row).to_contain_text("generating…")
    expect(row).to_contain_text("ready", timeout=120_000)  # a job on a shared machine
    with page.expect_download() as info:
        row.get_by_role("button", name="Download PDF").click()
    path = info.value.path()
    assert path.read_bytes().startswith(b"%PDF")


def test_the_ledger_exports_with_its_filters(served: Any, browser: Browser) -> None:
    case_id = first_case_id(served.base)
    page = browser.new_page(locale="en-US", accept_downloads=True)
    page.set_default_timeout(30_000)
    log_in(page, served.base, path=f"/app/cases/{case_id}/transactions?direction=credit")
    shown = page.locator("#txn-rows tr")
    expect(shown.first).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("button", name="Export CSV").click()
    assert info.value.suggested_filename == f"case-{case_id}-ledger.csv"
    lines = info.value.path().read_text().splitlines()
    assert lines[0].startswith("id,posted_on,amount,currency,direction")
    assert {line.split(",")[4] for line in lines[1:]} == {"credit"}  # the filter applied
    assert len(lines) - 1 >= shown.count()  # every matching row, not one page


PAGES = [
    ("cases", "/app/cases", "#case-rows tr"),
    ("case-new", "/app/cases/new", "#new-case"),
    ("case-overview", "/app/cases/{id}", "#dashboard-rows tr"),
    ("case-transactions", "/app/cases/{id}/transactions", "#txn-rows tr"),
    ("case-subjects", "/app/cases/{id}/subjects", "#subject-rows tr"),
    ("case-counterparties", "/app/cases/{id}/counterparties", "#counterparty-rows tr"),
    ("case-imports", "/app/cases/{id}/imports", "#import"),
    ("case-reports", "/app/cases/{id}/reports", "#request-report"),
    ("dashboard", "/app/dashboard", "svg.chart a"),
    ("dashboard-drilldown", "/app/dashboard?month={month}&category=payroll", "#drill-rows"),
    ("operator", "/app/operator", "#queue-rows tr"),
    ("review", "/app/review", "#queue-items tr"),
    ("users", "/app/users", "#user-rows tr"),
    ("organization", "/app/organization", "#organization-settings input[name=name]"),
    ("case-audit", "/app/cases/{id}/audit", "#audit-rows"),
    ("cases-filtered-empty", "/app/cases?q=no-such-case", ".empty"),
]


def test_every_page_renders_without_errors_and_is_screenshotted(
    served: Any, browser: Browser
) -> None:
    """As an admin (who sees every page), desktop and phone widths; the first render of the
    case page on this database is printed (measured, never asserted)."""
    case_id = first_case_id(served.base)
    month = dt.date.today().strftime("%Y-%m")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, suffix in ((1280, ""), (390, "-phone")):
        context = browser.new_context(locale="en-US", viewport={"width": width, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        problems = watch_errors(page)
        log_in(page, served.base, "admin@acme.test")
        for name, path, ready in PAGES:
            page.goto(served.base + path.format(id=case_id, month=month))
            expect(page.locator(ready).first).to_be_attached()
            expect(page.get_by_role("alert")).to_have_count(0)
            page.screenshot(path=SCREENSHOTS / f"{name}{suffix}.png", full_page=True)
        assert problems == [], problems
        context.close()
    page = browser.new_page(locale="en-US")
    log_in(page, served.base)
    page.goto(f"{served.base}/app/cases/{case_id}")
    expect(page.locator("#dashboard-rows tr").first).to_be_visible()
    # The app marks the moment a page is drawn with its data.
    rendered = page.evaluate(
        "() => performance.getEntriesByName('casebook:rendered').map((m) => m.startTime)"
    )
    assert len(rendered) == 1
    print(f"\nfirst render of the case page: {rendered[0]:.0f} ms after navigation start")


def test_the_pages_work_from_the_keyboard(served: Any, browser: Browser) -> None:
    """Links and buttons only, the charts' bars included; a new page takes the focus to its
    heading, so a screen reader announces it."""
    page = browser.new_page(locale="en-US")
    page.set_default_timeout(30_000)
    page.goto(served.base)
    page.get_by_label("Password").focus()
    page.keyboard.press("Enter")  # submits the login form
    page.locator("#case-rows a").first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#case-title")).to_be_focused()
    bar = page.locator("svg.chart a").first
    category = bar.get_attribute("href")
    assert category is not None
    assert "/transactions?category=" in category
    bar.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Transactions", level=2)).to_be_visible()
    expect(page.get_by_label("Category")).to_have_value(category.rsplit("=", 1)[1])
    page.get_by_label("Direction").select_option("debit")
    page.get_by_label("Category").press("Enter")  # submits the filters
    expect(page).to_have_url(re.compile(r"direction=debit"))
    expect(page.locator("#txn-rows tr").first).to_contain_text("debit")


def test_an_ended_sign_in_returns_to_the_login_and_the_next_one_is_live(
    served: Any, browser: Browser
) -> None:
    case_id = first_case_id(served.base)
    page = browser.new_page(locale="en-US")
    page.set_default_timeout(30_000)
    open_first_case(page, served.base)
    expect(page.locator("#live")).to_have_text("● live")
    # The sign-in ends elsewhere (both tokens refused): the next page asks to log in again.
    page.evaluate(
        "() => { sessionStorage.setItem('casebook.token', 'x');"
        " sessionStorage.setItem('casebook.refresh', 'y'); }"
    )
    page.get_by_role("link", name="Transactions").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Transactions", level=2)).to_be_visible()
    assert page.url.startswith(f"{served.base}/app/cases/{case_id}/transactions")
    expect(page.locator("#live")).to_have_text("● live")
