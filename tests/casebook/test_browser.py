"""The web UI in a real browser (Debian's Chromium through Playwright) against ``casebook
serve``: log in, open a case, read its dashboard, import a statement through the mapping
page (and see a bad one refused with its rejects); an unknown bank's statement: mapping
page, one column corrected, profile saved, imported; the bank's next file imports with no
questions."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

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


def open_first_case(page: Page, base: str) -> None:
    page.goto(base)
    page.get_by_role("button", name="Log in").click()  # the demo user is filled in
    page.locator("#case-rows tr").first.click()
    expect(page.locator("#dashboard-rows tr").first).to_be_visible()


def test_import_a_statement_from_the_case_page(
    served: Any, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_default_timeout(30_000)
    open_first_case(page, served.base)
    assert page.get_by_role("cell", name="browser-test").count() == 0

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
    # The dashboard and the ledger are read again: the new category is there, by direction.
    expect(page.locator("#dashboard-rows tr", has_text="browser-test")).to_have_count(2)
    expect(page.locator("#txn-rows tr", has_text="Café Müller")).to_have_count(1)

    bad = tmp_path / "bad.csv"
    bad.write_text("date,amount,category\n2026-03-03,-4,browser-test\n2026-03-04,x,browser-test\n")
    page.set_input_files("#import input[name=file]", str(bad))
    page.get_by_role("button", name="Import statement").click()
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-status")).to_contain_text("1 of 2 rows were rejected")
    rejects = page.locator("#import-rejects li")
    expect(rejects).to_have_count(1)
    expect(rejects.nth(0)).to_contain_text("row 3, amount: is not an amount (x)")
    expect(page.locator("#dashboard-rows tr", has_text="browser-test")).to_have_count(2)


AMEX = Path(__file__).parents[1] / "corpus" / "us-amex.csv"


def test_an_unknown_banks_statement_is_mapped_once_and_its_next_file_asks_nothing(
    served: Any, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_default_timeout(30_000)
    open_first_case(page, served.base)
    page.set_input_files("#import input[name=file]", str(AMEX))
    page.get_by_role("button", name="Import statement").click()
    # The mapping page: what was found, and the one thing it will not guess.
    expect(page.get_by_role("form", name="Mapping")).to_be_visible()
    expect(page.locator("#mapping-questions li")).to_contain_text(["Most amounts are positive"])
    expect(page.get_by_label("description column", exact=True)).to_have_value("Description")
    expect(page.locator("#mapping-rows tr").first).to_contain_text("UBER TRIP")
    page.get_by_label("counterparty column", exact=True).select_option("Description")  # correct one
    page.get_by_label("Sign", exact=True).select_option("inverted")
    page.get_by_label("Currency", exact=True).fill("USD")
    page.get_by_label("Save as profile").fill("Amex card")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-status")).to_have_text("imported 4 transactions")
    expect(page.locator("#txn-rows tr", has_text="DELTA AIR LINES")).to_contain_text("debit")
    expect(page.locator("#txn-rows tr", has_text="DELTA AIR LINES")).to_contain_text("USD")

    # November's statement of the same card: recognised by its header, no questions.
    november = tmp_path / "amex-november.csv"
    november.write_text(
        "Date,Description,Amount\n11/03/2025,LYFT RIDE,12.40\n11/19/2025,AUTOPAY PAYMENT,-50.00\n"
    )
    page.set_input_files("#import input[name=file]", str(november))
    page.get_by_role("button", name="Import statement").click()
    expect(page.locator("#import-status")).to_have_text("imported 2 transactions")
    expect(page.get_by_role("form", name="Mapping")).to_be_hidden()
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
