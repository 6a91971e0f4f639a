// casebook's web UI: an app shell with real URLs under /app/ (History API: deep links,
// reload, Back and Forward land on the page they name), a navigation bar by role, and one
// module per page, loaded when first visited. No build step: plain ES modules, served under
// a content-hashed URL by casebook/ui.py.
//
// Adding a page is one row in ROUTES and a module pages/{page}.js exporting render(ctx) (a
// case tab is one row in TABS of pages/case.js). ctx = {params, query, me, root, navigate,
// signal, can(role…)}: draw into root; stop work when signal aborts (the page was left).
import { ApiError, call, errorBox, login, session } from "./api.js";
import { el, use } from "./format.js";
import * as live from "./live.js";
import * as offline from "./offline.js";

// Address under /app/ (":id" a number, "?" optional), module, nav label, roles (default all).
export const ROUTES = [
  { path: "cases", page: "cases", nav: "Cases" },
  { path: "cases/new", page: "case-new", under: "cases", roles: ["analyst", "admin"] },
  { path: "cases/:id/:tab?", page: "case", under: "cases" },
  { path: "accounts/:id", page: "account", under: "cases" },
  { path: "dashboard", page: "dashboard", nav: "Dashboard" },
  { path: "review", page: "review", nav: "Review queue", roles: ["reviewer", "admin"] },
  { path: "users", page: "users", nav: "Users", roles: ["admin"] },
  { path: "organization", page: "organization", nav: "Organization", roles: ["admin"] },
  { path: "operator", page: "operator", nav: "Operator", roles: ["admin"] },
].map((r) => ({
  roles: ["analyst", "reviewer", "admin"], ...r, href: `/app/${r.under || r.path}`,
  pattern: new RegExp(`^/app/${r.path.replace(/\/:(\w+)\?/g, "(?:/(?<$1>[a-z]+))?").replace(/:(\w+)/g, "(?<$1>\\d+)")}/?$`),
}));
const HOME = "/app/cases";

let me = null;
let leaving = null; // aborts the page being left

export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  return route();
}

async function route() {
  if (leaving) leaving.abort();
  leaving = new AbortController();
  const signal = leaving.signal;
  const main = document.getElementById("main");
  if (!session.token) { showLogin(main); return; }
  if (location.pathname === "/" || location.pathname === "/app" || location.pathname === "/app/") {
    history.replaceState(null, "", HOME);
  }
  if (!me) {
    try {
      me = await call("/auth/me");
    } catch (error) {
      main.replaceChildren(errorBox(error, "Could not load your account"));
      return;
    }
    live.connect((id) => notice(`A case assigned to you (${id}) was updated.`, `/app/cases/${id}`));
    offline.lockstep().catch((error) => console.error(error)); // edits queued earlier are pushed
  }
  const found = ROUTES.map((r) => ({ r, m: r.pattern.exec(location.pathname) })).find((x) => x.m);
  drawNav(found && found.r);
  const root = el("div", { class: "page" });
  main.replaceChildren(root);
  if (!found || !found.r.roles.includes(me.role)) {
    document.title = "Not found · casebook";
    root.append(el("h1", {}, "Page not found"),
      el("p", {}, found ? "Your role does not open this page. " : "No page has this address. ",
        el("a", { href: HOME }, "Back to the cases")));
    return;
  }
  const ctx = {
    params: found.m.groups || {}, query: new URLSearchParams(location.search), me, root, navigate, signal,
    can: (...roles) => roles.includes(me.role),
  };
  try {
    const page = await import(`./pages/${found.r.page}.js`);
    if (signal.aborted) return;
    await page.render(ctx);
  } catch (error) {
    if (signal.aborted) return;
    if (!(error instanceof ApiError)) console.error(error); // a bug, not an answer: say so
    root.append(errorBox(error));
  }
  if (signal.aborted) return;
  performance.mark("casebook:rendered"); // the page is drawn with its data (measured by tests)
  // Focus the new page's heading (announced by screen readers) unless focus is still on it.
  const heading = root.querySelector("h1");
  if (heading && (document.activeElement === document.body || !document.activeElement.isConnected)) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

function drawNav(current) {
  document.getElementById("nav").replaceChildren(...ROUTES
    .filter((r) => r.nav && r.roles.includes(me.role))
    .map((r) => el("a", { href: r.href, "aria-current": current && r.href === current.href ? "page" : null }, r.nav)));
  document.getElementById("who").textContent = `${me.full_name} · ${me.role}`;
  document.getElementById("logout").hidden = false;
}

function notice(text, href) {
  const box = document.getElementById("notice");
  box.replaceChildren(text, " ", href ? el("a", { href }, "Open") : "",
    el("button", { type: "button", class: "quiet", "aria-label": "Dismiss", onclick: () => { box.hidden = true; } }, "×"));
  box.hidden = false;
}

function logout() {
  const refresh = session.refreshToken;
  if (refresh) {
    fetch("/api/v1/auth/logout", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refresh }), keepalive: true }).catch(() => {});
  }
  endSession();
}

// Logged out, or the sign-in ended (refresh refused): lockstep's module forgets the token
// and the data its service worker kept, then start afresh without the tokens (the shell
// revalidates, the assets are cached), which shows the login at the same address.
async function endSession() {
  try { await offline.signOut(); } catch (error) { console.error(error); }
  session.clear();
  location.reload();
}

function showLogin(main) {
  document.title = "Log in · casebook";
  const form = use("t-login");
  const error = form.querySelector("#login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.replaceChildren();
    try {
      await login(new FormData(form));
    } catch (failure) {
      error.replaceChildren(errorBox(failure, "Could not log in"));
      return;
    }
    route(); // the page the address names: a deep link survives the login
  });
  main.replaceChildren(form);
}

// Links inside the app are followed by the router (a plain click; a modified click opens a
// tab as usual).
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.getAttribute("href"), location.href); // SVG links too
  if (url.origin !== location.origin || !url.pathname.startsWith("/app/") || link.hasAttribute("download")) return;
  event.preventDefault();
  if (url.href !== location.href) navigate(url.pathname + url.search);
});
window.addEventListener("popstate", route);
document.getElementById("logout").addEventListener("click", logout);
session.onExpired = endSession;
route();
