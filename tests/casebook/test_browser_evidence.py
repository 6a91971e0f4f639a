"""The Notes & evidence tab in Chromium: an analyst adds a note and uploads a file (its
SHA-256 shown, shortened), downloads it (the same bytes), verifies it and unfolds its chain
of custody (uploaded, downloaded, verified); a reviewer with the tab open sees the note and
the file arrive live and is offered neither form. Screenshots in build/screenshots/."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, expect

from .test_browser import SCREENSHOTS, browser, first_case_id, log_in, watch_errors

__all__ = ["browser"]  # the fixture, imported for pytest


def test_notes_and_evidence_with_download_and_custody(
    served: Any, browser: Browser, tmp_path: Path
) -> None:
    base = served.base
    case_id = first_case_id(base)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab = f"/app/cases/{case_id}/notes"
    analyst_context = browser.new_context(locale="en-US", accept_downloads=True)
    reviewer_context = browser.new_context(locale="en-US")
    analyst, reviewer = analyst_context.new_page(), reviewer_context.new_page()
    problems = {page: watch_errors(page) for page in (analyst, reviewer)}
    for page in (analyst, reviewer):
        page.set_default_timeout(30_000)

    log_in(reviewer, base, "reviewer@acme.test", tab)
    expect(reviewer.get_by_role("heading", name="Notes & evidence", level=2)).to_be_visible()
    expect(reviewer.locator("main .page")).to_have_attribute("data-live", "subscribed")
    expect(reviewer.locator("#note-form")).to_have_count(0)
    expect(reviewer.locator("#evidence-form")).to_have_count(0)

    log_in(analyst, base, path=tab)
    expect(analyst.get_by_role("heading", name="Notes & evidence", level=2)).to_be_visible()
    analyst.get_by_label("New note").fill("Called the bank:\nstatement for March requested.")
    analyst.get_by_role("button", name="Add note").click()
    note = analyst.locator("#note-list .note").first
    expect(note).to_contain_text("statement for March requested.")
    # The reviewer's open page shows it without a reload.
    expect(reviewer.locator("#note-list .note").first).to_contain_text("statement for March")

    content = b"Kontoauszug M\xc3\xa4rz\n" + bytes(range(256)) * 40
    sha = hashlib.sha256(content).hexdigest()
    upload = tmp_path / "Kontoauszug März.pdf"
    upload.write_bytes(content)
    analyst.set_input_files("#evidence-file", str(upload))
    analyst.get_by_label("Description (optional)").fill("March statement, from the bank")
    analyst.get_by_role("button", name="Upload evidence").click()
    expect(analyst.locator("#evidence-status")).to_contain_text(f"SHA-256 {sha[:12]}")
    row = analyst.locator("#evidence-rows tr", has_text="Kontoauszug März.pdf")
    expect(row).to_contain_text(f"{sha[:12]}…")
    expect(row.locator("code")).to_have_attribute("title", sha)
    expect(row).to_contain_text("10,258 B")
    expect(reviewer.locator("#evidence-rows tr", has_text="Kontoauszug März.pdf")).to_be_visible()

    with analyst.expect_download() as info:
        row.get_by_role("button", name="Download").click()
    assert info.value.suggested_filename == "Kontoauszug März.pdf"
    assert info.value.path().read_bytes() == content

    row.get_by_role("button", name="Verify").click()
    expect(analyst.locator("#evidence-status")).to_contain_text("matches its SHA-256")
    expect(row.locator(".badge")).to_contain_text("ok")
    row.get_by_role("button", name="Custody").click()
    custody = analyst.get_by_role("list", name=re.compile("Chain of custody"))
    expect(custody.locator("li")).to_have_count(3)
    expect(custody.locator("li").nth(0)).to_contain_text("uploaded")
    expect(custody.locator("li").nth(1)).to_contain_text("downloaded")
    expect(custody.locator("li").nth(2)).to_contain_text("verified OK")
    expect(custody.locator("li").nth(0)).to_contain_text("Ada Analyst")  # the analyst's name
    analyst.screenshot(path=SCREENSHOTS / "case-notes-evidence.png", full_page=True)
    reviewer.screenshot(path=SCREENSHOTS / "case-notes-evidence-reviewer.png", full_page=True)
    for page, seen in problems.items():
        assert seen == [], (page.url, seen)
