"""casebook's edits through lockstep.js in a real browser (Debian's Chromium, Playwright)
against ``casebook serve``: three edits made offline survive a reload (the IndexedDB outbox,
the page served by the service worker) and are applied once, in order, when the network is
back, though two tabs and the service worker push the same outbox; an edit the server
refuses is rolled back and listed; an edit made in another tab appears without a reload
(the case follows its Electric shape)."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from .test_browser import browser  # noqa: F401 - the fixture

# Resolves once lockstep's service worker controls the page (awaited, not polled: the page's
# CSP forbids the eval that wait_for_function would use).
CONTROLLED = """() => navigator.serviceWorker.controller !== null || new Promise((resolve) =>
    navigator.serviceWorker.addEventListener("controllerchange", () => resolve(true)))"""


def log_in(page: Page, base: str) -> None:
    page.goto(base)
    page.get_by_role("button", name="Log in").click()  # the demo analyst is filled in
    expect(page.locator("#case-rows tr").first).to_be_visible()


def first_case(page: Page) -> str:
    href = page.locator("#case-rows tr a").first.get_attribute("href")  # /app/cases/{id}
    assert href is not None
    return href.rsplit("/", 1)[-1]


def open_case(page: Page, case_id: str) -> None:
    page.locator(f'#case-rows a[href="/app/cases/{case_id}"]').click()
    case_shown(page)


def case_shown(page: Page) -> None:
    """The case page is drawn with lockstep.js's view of the case (its edit form's status)."""
    expect(page.locator("#case-sync")).not_to_be_empty()


def tab(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Case sections").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, level=2)).to_be_visible()


def edit(page: Page, **fields: str) -> None:
    form = page.get_by_role("form", name="Edit case")
    for name, value in fields.items():
        if name == "title":
            form.locator("input[name=title]").fill(value)
        else:
            form.locator(f"select[name={name}]").select_option(value)
    form.get_by_role("button", name="Save").click()


def api_case(base: str, case_id: str, **changes: Any) -> dict[str, Any]:
    """The case as the API has it (after ``changes``, PATCHed, if any)."""
    with httpx.Client(base_url=base) as client:
        token = client.post(
            "/api/v1/auth/token", data={"username": "analyst@acme.test", "password": "demo"}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        if changes:
            client.patch(
                f"/api/v1/cases/{case_id}", json=changes, headers=headers
            ).raise_for_status()
        answer = client.get(f"/api/v1/cases/{case_id}", headers=headers)
        answer.raise_for_status()
        case: dict[str, Any] = answer.json()
        return case


def test_offline_edits_survive_a_reload_and_apply_once_in_order(
    served: Any,
    browser: Browser,  # noqa: F811 - the fixture
) -> None:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    log_in(page, served.base)
    case_id = first_case(page)
    open_case(page, case_id)  # lockstep.js starts: its service worker takes over, and
    page.evaluate(CONTROLLED)  # keeps the page and what it reads for offline use
    page.reload()  # the case's own address: the page comes back
    case_shown(page)
    expect(page.locator("#case-sync")).to_have_text("all edits saved")
    before = api_case(served.base, case_id)
    # Another tab (its own sign-in, the same user: the same outbox) is open throughout.
    other = context.new_page()
    log_in(other, served.base)
    open_case(other, case_id)

    context.set_offline(True)
    edit(page, title="Offline one")
    expect(page.locator("#case-sync")).to_have_text("1 edit waiting to sync")
    edit(page, priority="5")
    expect(page.locator("#case-sync")).to_have_text("2 edits waiting to sync")
    edit(page, title="Offline three")
    expect(page.locator("#case-sync")).to_have_text("3 edits waiting to sync")
    expect(page.locator("#case-title")).to_contain_text("Offline three")

    page.reload()  # still offline: the outbox and the page come back from the browser
    case_shown(page)
    expect(page.locator("#case-sync")).to_have_text("3 edits waiting to sync")
    expect(page.locator("#case-title")).to_contain_text("Offline three")
    expect(page.locator("#case-meta .prio")).to_have_text("P5")
    assert api_case(served.base, case_id)["version"] == before["version"]

    # Both tabs and the service worker push the one outbox when the network is back.
    context.set_offline(False)
    expect(page.locator("#case-sync")).to_have_text("all edits saved")
    expect(other.locator("#case-title")).to_contain_text("Offline three")
    after = api_case(served.base, case_id)
    assert after["version"] == before["version"] + 3  # each applied once
    assert (after["title"], after["priority"]) == ("Offline three", 5)  # in order

    # Refused: an empty title (422). Rolled back, and listed for the user.
    edit(page, title="")
    letters = page.locator("#dead-letter-list li")
    expect(letters).to_have_count(1)
    expect(letters.first).to_contain_text("case.update of case")
    expect(letters.first).to_contain_text("rejected")
    expect(page.locator("#case-title")).to_contain_text("Offline three")
    expect(page.locator("#case-sync")).to_have_text("all edits saved")
    assert api_case(served.base, case_id)["version"] == before["version"] + 3

    # The other tab edits the case: this one shows it without a reload.
    edit(other, title="From the other tab")
    expect(other.locator("#case-sync")).to_have_text("all edits saved")
    expect(page.locator("#case-title")).to_contain_text("From the other tab")
    assert api_case(served.base, case_id)["version"] == before["version"] + 4

    # A subject's notes (the Subjects tab), the same way; the other tab shows them live.
    tab(page, "Subjects")
    tab(other, "Subjects")
    notes = page.locator("#subject-notes form").first
    notes.locator("textarea").fill("Seen at the branch on Monday")
    notes.get_by_role("button", name="Save notes").click()
    expect(other.locator("#subject-notes textarea").first).to_have_value(
        "Seen at the branch on Monday"
    )
    subject = api_case(served.base, case_id)["subjects"][0]
    assert subject["notes"] == "Seen at the branch on Monday"

    # An edit made offline on a version someone else has changed since: a conflict (stale
    # base_version), rolled back to what the server has, and listed.
    context.set_offline(True)
    edit(page, title="Too late")
    expect(page.locator("#case-sync")).to_have_text("1 edit waiting to sync")
    changed = api_case(served.base, case_id, title="Changed meanwhile")
    context.set_offline(False)
    expect(letters).to_have_count(2)
    expect(page.locator("#dead-letter-list li", has_text="Too late")).to_contain_text(
        "conflict: stale_version"
    )
    expect(page.locator("#case-title")).to_contain_text("Changed meanwhile")
    expect(page.locator("#case-sync")).to_have_text("all edits saved")
    assert api_case(served.base, case_id)["version"] == changed["version"]
    assert problems == []
    context.close()


# In the page: three requests refused at once (an expired token) share one refresh; a GET
# read twice is revalidated (If-None-Match) and its 304 answered from the remembered body.
FETCH = """async ([moduleUrl, caseUrl]) => {
  const { Lockstep } = await import(moduleUrl);
  const good = sessionStorage.getItem("casebook.token");
  let token = "expired";
  let refreshes = 0;
  const ls = await Lockstep.start({
    scope: "fetch-test", worker: false, token: () => token,
    refresh: async () => { refreshes += 1; token = good; return token; },
  });
  const statuses = (await Promise.all(
    ["/api/v1/auth/me", "/api/v1/cases", caseUrl].map((url) => ls.fetch(url)),
  )).map((r) => r.status);
  const first = await (await ls.fetch(caseUrl)).json();
  const again = await ls.fetch(caseUrl);
  const second = await again.json();
  ls.close();
  return { refreshes, statuses, status: again.status, same: first.title === second.title };
}"""


def test_fetch_refreshes_once_for_concurrent_401s_and_reuses_304s(
    served: Any,
    browser: Browser,  # noqa: F811 - the fixture
) -> None:
    page = browser.new_page()
    page.set_default_timeout(30_000)
    log_in(page, served.base)
    case_id = first_case(page)
    case_url = f"/api/v1/cases/{case_id}"
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if r.url.endswith(case_url) else None)
    module = page.locator('meta[name="lockstep-module"]').get_attribute("content")
    result = page.evaluate(FETCH, [module, case_url])
    assert result == {"refreshes": 1, "statuses": [200, 200, 200], "status": 200, "same": True}
    # Refused, then read with the new token; each later read revalidated, its body reused.
    assert answers == [401, 200, 304, 304]


LISTEN = """(scope) => {
  const channel = new BroadcastChannel(`lockstep:${scope}`);
  window.lockstepApplied = new Promise((resolve) => {
    channel.onmessage = (event) => { if (event.data.type === "applied") resolve(event.data); };
  });
}"""
ASK_WORKER = """async (scope) => {
  navigator.serviceWorker.controller.postMessage({ type: "flush", scope });
  const applied = await window.lockstepApplied;
  return applied.mutation.args;
}"""
SCOPE = """() => {
  const token = sessionStorage.getItem("casebook.token");
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return `user-${JSON.parse(atob(payload)).sub}`;
}"""


def test_the_service_worker_pushes_the_outbox_with_no_page_of_the_app_open(
    served: Any,
    browser: Browser,  # noqa: F811 - the fixture
) -> None:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    log_in(page, served.base)
    case_id = first_case(page)
    open_case(page, case_id)
    page.evaluate(CONTROLLED)
    expect(page.locator("#case-sync")).to_have_text("all edits saved")
    scope = page.evaluate(SCOPE)
    before = api_case(served.base, case_id)
    # A page the worker controls that runs none of lockstep.js: only the worker can push.
    docs = context.new_page()
    docs.goto(f"{served.base}/docs")
    docs.evaluate(CONTROLLED)

    context.set_offline(True)
    edit(page, title="Pushed by the worker")
    expect(page.locator("#case-sync")).to_have_text("1 edit waiting to sync")
    page.close()
    docs.evaluate(LISTEN, scope)
    context.set_offline(False)
    # Background Sync may already be pushing; asking again is harmless (one lock, once).
    args = docs.evaluate(ASK_WORKER, scope)
    assert args == {"case_id": int(case_id), "title": "Pushed by the worker"}
    after = api_case(served.base, case_id)
    assert (after["title"], after["version"]) == ("Pushed by the worker", before["version"] + 1)
    context.close()


# In the page, with casebook's own modules (the instances the UI runs): the UI's API client
# (api.js renew, as on a 401 and for the realtime client) and lockstep's module
# (Lockstep.refreshed, as for the outbox, fetch and shapes) renewing the same stale token at
# once share one refresh; logging out leaves the outbox with no token.
RENEW = """async (js) => {
  const api = await import(`${js}/api.js`);
  const offline = await import(`${js}/offline.js`);
  const ls = await offline.lockstep();
  const stale = sessionStorage.getItem("casebook.token");
  const tokens = await Promise.all(
    [api.renew(stale), ls.refreshed(stale), api.renew(stale), ls.refreshed(stale)]);
  // Late answers to requests sent with the old token: it was replaced, nothing to refresh.
  tokens.push(await api.renew(stale), await ls.refreshed(stale));
  return { same: new Set(tokens).size === 1, fresh: tokens[0] !== stale,
           stored: tokens[0] === sessionStorage.getItem("casebook.token"),
           outbox: (await ls.outbox.token()) === tokens[0] };
}"""
OUTBOX_TOKEN = """async ([moduleUrl, scope]) => {
  const { Outbox } = await import(moduleUrl);
  const outbox = await Outbox.open(scope);
  const token = await outbox.token();
  outbox.close();
  return token;
}"""


def test_the_page_and_the_module_share_one_refresh_and_logout_forgets_the_token(
    served: Any,
    browser: Browser,  # noqa: F811 - the fixture
) -> None:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    log_in(page, served.base)
    open_case(page, first_case(page))
    refreshes: list[int] = []
    page.on(
        "response",
        lambda r: refreshes.append(r.status) if r.url.endswith("/api/v1/auth/refresh") else None,
    )
    main = page.locator('script[type="module"]').first.get_attribute("src")
    assert main is not None
    assert main.endswith("/js/main.js")  # /static/{hash}/js/main.js
    result = page.evaluate(RENEW, main.rsplit("/", 1)[0])
    assert result == {"same": True, "fresh": True, "stored": True, "outbox": True}
    assert refreshes == [200]  # one refresh token used, once: the sign-in goes on
    expect(page.locator("#case-sync")).to_have_text("all edits saved")

    scope = page.evaluate(SCOPE)
    module = page.locator('meta[name="lockstep-module"]').get_attribute("content")
    assert page.evaluate(OUTBOX_TOKEN, [module, scope]) is not None
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.evaluate(OUTBOX_TOKEN, [module, scope]) is None
    assert problems == []
    context.close()


def test_a_case_is_reassigned_from_its_header_and_every_tab_sees_it(
    served: Any,
    browser: Browser,  # noqa: F811 - the fixture
) -> None:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    log_in(page, served.base)
    case_id = first_case(page)
    open_case(page, case_id)
    other = context.new_page()
    log_in(other, served.base)
    open_case(other, case_id)
    form = page.get_by_role("form", name="Edit case")
    expect(form.get_by_label("Assignee")).to_contain_text("Rui Reviewer (reviewer)")  # /people
    form.get_by_label("Assignee").select_option(label="Rui Reviewer (reviewer)")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#case-assignee")).to_have_text("Rui Reviewer")
    expect(page.locator("#case-sync")).to_have_text("all edits saved")
    expect(other.locator("#case-assignee")).to_have_text("Rui Reviewer")  # its shape, live
    assert api_case(served.base, case_id)["assignee"]["full_name"] == "Rui Reviewer"
    form.get_by_label("Assignee").select_option("")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#case-assignee")).to_have_text("nobody")
    expect(page.locator("#case-sync")).to_have_text("all edits saved")
    assert api_case(served.base, case_id)["assignee"] is None
    assert problems == []
    context.close()
