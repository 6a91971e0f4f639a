"""The review workflow in real browsers, one context per user: an analyst flags two
transactions from a case's ledger; a reviewer sees them in the review queue and claims one;
an admin, working as a second reviewer with the queue open, sees the claim arrive live and
cannot claim it (409, shown); the reviewer decides it and it leaves the admin's queue live;
an item the admin flagged is refused to the admin by the four-eyes rule (403, shown); the
case's Audit tab shows the flag, the claim and the decision; an admin creates a user and
deactivates it on the Users page. Screenshots in build/screenshots/."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from .test_browser import SCREENSHOTS, api_token, browser, log_in, watch_errors

__all__ = ["browser"]  # the fixture, imported for pytest


def analysts_case(base: str) -> int:
    """A case assigned to the analyst: neither the reviewer nor the admin is its assignee,
    so the four-eyes rule leaves them free to review it (unless they flagged the item)."""
    headers = {"Authorization": f"Bearer {api_token(base, 'analyst@acme.test')}"}
    me = httpx.get(f"{base}/api/v1/auth/me", headers=headers).json()
    cases = httpx.get(f"{base}/api/v1/cases?limit=1&assignee_id={me['id']}", headers=headers)
    return int(cases.json()["items"][0]["id"])


def expected_refusals(problems: list[str]) -> list[str]:
    """The browser logs every 4xx answer as a console error; the refusals the test provokes
    (409, 403) are expected, anything else is a problem."""
    return [p for p in problems if not re.search(r"status of 40[39]", p)]


def flag(page: Page, reason: str) -> None:
    """Flag the first transaction of the ledger that can still be flagged."""
    buttons = page.locator("#txn-rows").get_by_role("button", name=re.compile(r"^Flag "))
    before = buttons.count()
    assert before > 0
    buttons.first.click()
    dialog = page.get_by_role("dialog", name="Flag for review")
    dialog.get_by_label("Reason").fill(reason)
    dialog.get_by_label("Priority").select_option("1")
    dialog.get_by_role("button", name="Flag", exact=True).click()
    expect(page.locator("#flag-status")).to_contain_text("Flagged for review")
    expect(buttons).to_have_count(before - 1)  # the row is marked flagged, its button gone


def test_flag_claim_decide_with_four_eyes_live_queue_and_audit(
    served: Any, browser: Browser
) -> None:
    base = served.base
    case_id = analysts_case(base)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    contexts = [browser.new_context(locale="en-US") for _ in range(3)]
    analyst, reviewer, admin = (c.new_page() for c in contexts)
    problems = {p: watch_errors(p) for p in (analyst, reviewer, admin)}
    for page in (analyst, reviewer, admin):
        page.set_default_timeout(30_000)

    # The analyst flags two transactions of the case.
    log_in(analyst, base, path=f"/app/cases/{case_id}/transactions")
    expect(analyst.locator("#txn-rows tr").first).to_be_visible()
    flag(analyst, "browser test A: round sums")
    flag(analyst, "browser test B: new counterparty")
    expect(analyst.locator("#txn-rows .badge.flagged").first).to_be_visible()
    analyst.screenshot(path=SCREENSHOTS / "case-transactions-flagged.png", full_page=True)
    # An analyst is not offered the queue.
    expect(analyst.get_by_role("navigation", name="Main").get_by_role("link")).to_have_text(
        ["Cases", "Dashboard"]
    )

    # The reviewer and the admin open the case's queue.
    queue = f"/app/review?case={case_id}"
    log_in(reviewer, base, "reviewer@acme.test", queue)
    log_in(admin, base, "admin@acme.test", queue)
    for page in (reviewer, admin):
        expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
        expect(page.locator("main .page")).to_have_attribute("data-live", "subscribed")
    item_a = reviewer.locator("#queue-items tr", has_text="browser test A")
    expect(item_a).to_contain_text("free")
    expect(reviewer.locator("#queue-items tr", has_text="browser test B")).to_be_visible()
    # Priority 1 first: both are ahead of the rule-flagged items of lower urgency.
    expect(reviewer.locator("#queue-items tr").first).to_contain_text("P1")

    item_a.get_by_role("button", name="Claim").click()
    expect(reviewer.locator("#review-message")).to_contain_text("claimed, the lease is yours")
    expect(item_a).to_contain_text("claimed by you until")
    # The admin's queue shows the claim without a reload, with the holder's name.
    admin_a = admin.locator("#queue-items tr", has_text="browser test A")
    expect(admin_a).to_contain_text("claimed by Rui Reviewer until")
    admin.screenshot(path=SCREENSHOTS / "review-claimed.png", full_page=True)
    # The admin, a second reviewer, cannot claim it: someone else holds the lease (409).
    admin_a.get_by_role("button", name="Claim").click()
    refusal = admin.locator("#review-message").get_by_role("alert")
    expect(refusal).to_contain_text("could not claim it")
    expect(refusal).to_contain_text("409")

    # The reviewer decides it: it leaves both queues (pending items only), the admin's live.
    decide = item_a.get_by_role("form")
    decide.get_by_label("Outcome").select_option("suspicious")
    decide.get_by_label("Reason").fill("structuring below the threshold")
    reviewer.screenshot(path=SCREENSHOTS / "review-deciding.png", full_page=True)
    decide.get_by_role("button", name="Decide").click()
    expect(reviewer.locator("#review-message")).to_contain_text("decided")
    expect(item_a).to_have_count(0)
    expect(admin_a).to_have_count(0)
    # Decided items are one filter away, with the outcome and the reason.
    reviewer.get_by_label("Status").select_option("decided")
    decided = reviewer.locator("#queue-items tr", has_text="browser test A")
    expect(decided).to_contain_text("suspicious")
    expect(decided).to_contain_text("structuring below the threshold")

    # Four-eyes: the admin flags a transaction and may not review it.
    admin.goto(f"{base}/app/cases/{case_id}/transactions")
    expect(admin.locator("#txn-rows tr").first).to_be_visible()
    flag(admin, "browser test C: flagged by the admin")
    admin.get_by_role("link", name="Open the review queue").click()
    item_c = admin.locator("#queue-items tr", has_text="browser test C")
    item_c.get_by_role("button", name="Claim").click()
    refusal = admin.locator("#review-message").get_by_role("alert")
    expect(refusal).to_contain_text("four-eyes rule: you flagged this item")
    expect(refusal).to_contain_text("403 permission_denied")
    admin.screenshot(path=SCREENSHOTS / "review-four-eyes.png", full_page=True)

    # The case's audit trail: the flag, the claim and the decision, with who did them.
    reviewer.goto(f"{base}/app/cases/{case_id}/audit")
    rows = reviewer.locator("#audit-rows tr")
    expect(rows.filter(has_text="browser test A").filter(has_text="insert")).to_have_count(1)
    expect(rows.filter(has_text="claimed_until").filter(has_text="you").first).to_be_visible()
    expect(rows.filter(has_text="outcome").filter(has_text="suspicious")).to_have_count(1)
    expect(reviewer.get_by_role("button", name=re.compile("Download CSV"))).to_be_visible()
    reviewer.screenshot(path=SCREENSHOTS / "case-audit-trail.png", full_page=True)

    for seen in problems.values():
        assert expected_refusals(seen) == [], seen
    for context in contexts:
        context.close()


def test_an_admin_creates_and_deactivates_a_user(served: Any, browser: Browser) -> None:
    page = browser.new_page(locale="en-US")
    page.set_default_timeout(30_000)
    problems = watch_errors(page)
    log_in(page, served.base, "admin@acme.test", "/app/users")
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    expect(page.locator("#user-rows tr", has_text="Rui Reviewer")).to_contain_text("active")

    form = page.get_by_role("form", name="New user")
    form.get_by_label("E-mail").fill("tess@acme.test")
    form.get_by_label("Full name").fill("Tess Temp")
    form.get_by_label("Role").select_option("reviewer")
    form.get_by_label("First password").fill("a long first password")
    form.get_by_role("button", name="Create user").click()
    expect(page.locator("#users-message")).to_contain_text("can now sign in as reviewer")
    tess = page.locator("#user-rows tr", has_text="Tess Temp")
    expect(tess).to_contain_text("active")

    tess.get_by_label("Role of Tess Temp").select_option("analyst")
    tess.get_by_role("button", name="Change role").click()
    expect(page.locator("#users-message")).to_contain_text("Tess Temp: now analyst")
    tess.get_by_role("button", name="Deactivate Tess Temp").click()
    expect(tess).to_contain_text("deactivated")
    expect(tess.get_by_role("button", name="Reactivate Tess Temp")).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "users.png", full_page=True)
    # A deactivated user cannot sign in.
    answer = httpx.post(
        f"{served.base}/api/v1/auth/token",
        data={"username": "tess@acme.test", "password": "a long first password"},
    )
    assert answer.status_code == 401

    # The admin's case list may filter by any user.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Cases").click()
    page.get_by_label("Assignee").select_option(label="Rui Reviewer")
    expect(page).to_have_url(re.compile(r"assignee=\d+"))
    assert problems == [], problems


def test_a_reviewer_decides_offline_and_the_decisions_apply_when_back_online(
    served: Any, browser: Browser
) -> None:
    """Decisions go through lockstep's outbox: made offline, shown as waiting, applied once
    when the network is back; one whose lease the reviewer gave up meanwhile is refused by
    the server and listed with the edits it refused."""
    base = served.base
    case_id = analysts_case(base)
    analyst = {"Authorization": f"Bearer {api_token(base, 'analyst@acme.test')}"}
    reviewer_api = {"Authorization": f"Bearer {api_token(base, 'reviewer@acme.test')}"}
    txns = httpx.get(
        f"{base}/api/v1/cases/{case_id}/transactions?limit=20&flagged=false", headers=analyst
    ).json()["items"]
    items = []
    for txn, reason in zip(txns, ("offline D1", "offline D2"), strict=False):
        flagged = httpx.post(
            f"{base}/api/v1/transactions/{txn['id']}/flag", json={"reason": reason}, headers=analyst
        )
        assert flagged.status_code == 201, flagged.text
        items.append(flagged.json()["id"])
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems = watch_errors(page)
    log_in(page, base, "reviewer@acme.test", f"/app/review?case={case_id}")
    expect(page.locator("main .page")).to_have_attribute("data-live", "subscribed")
    rows = [page.locator("#queue-items tr", has_text=r) for r in ("offline D1", "offline D2")]
    for row in rows:
        row.get_by_role("button", name="Claim").click()
        expect(row).to_contain_text("claimed by you until")

    context.set_offline(True)
    for row, outcome in zip(rows, ("cleared", "escalate"), strict=True):
        form = row.get_by_role("form")
        form.get_by_label("Outcome").select_option(outcome)
        form.get_by_label("Reason").fill(f"decided offline: {outcome}")
        form.get_by_role("button", name="Decide").click()
        expect(row).to_contain_text("waiting to sync")
    # Meanwhile (from another device) the reviewer gives the second item's lease up.
    released = httpx.post(f"{base}/api/v1/adjudication/{items[1]}/release", headers=reviewer_api)
    assert released.status_code == 200, released.text
    assert (
        httpx.get(f"{base}/api/v1/adjudication/{items[0]}", headers=analyst).json()["status"]
        == "pending"
    )

    context.set_offline(False)
    letters = page.locator("#dead-letter-list li")
    expect(letters).to_have_count(1)
    expect(letters.first).to_contain_text(f"review item {items[1]}")
    expect(rows[0]).to_have_count(0)  # decided: it leaves the pending queue, live
    expect(rows[1]).to_contain_text("free")
    first = httpx.get(f"{base}/api/v1/adjudication/{items[0]}", headers=analyst).json()
    assert (first["status"], first["outcome"]) == ("decided", "cleared")
    assert first["decision_reason"] == "decided offline: cleared"
    second = httpx.get(f"{base}/api/v1/adjudication/{items[1]}", headers=analyst).json()
    assert second["status"] == "pending"
    page.screenshot(path=SCREENSHOTS / "review-offline-decisions.png", full_page=True)
    assert expected_refusals(problems) == [], problems
    context.close()
