// A case: its header and tabs, each tab a URL (/app/cases/{id}/{tab}) and a module
// pages/case-{tab}.js loaded when first opened. Adding a tab is one row in TABS and that
// module.
//
// A tab's render(ctx, kase) gets the router's ctx plus ctx.redraw(tables, draw): draw() now,
// and again (once per burst) when rows of those tables of the case commit, or when missed
// publications could not be recovered; it returns draw()'s promise.
import { call, errorBox } from "../api.js";
import { date, el, priorityBadge, statusBadge } from "../format.js";
import * as live from "../live.js";
import { caseEditor } from "../offline.js";

export const TABS = [
  { id: "overview", label: "Overview" },
  { id: "transactions", label: "Transactions" },
  { id: "subjects", label: "Subjects" },
  { id: "counterparties", label: "Counterparties" },
  { id: "imports", label: "Imports" },
  { id: "reports", label: "Reports" },
  { id: "notes", label: "Notes & evidence" },
  { id: "audit", label: "Audit" },
];

export async function render(ctx) {
  const { root, params, signal } = ctx;
  const tab = TABS.find((t) => t.id === (params.tab || "overview"));
  const loading = tab ? import(`./case-${tab.id}.js`) : null; // in parallel with the case
  let kase;
  try {
    kase = await call(`/cases/${params.id}`, { signal });
  } catch (error) {
    document.title = "Case · casebook";
    root.append(el("h1", {}, error.status === 404 ? "Case not found" : "Case"), errorBox(error),
      el("p", {}, el("a", { href: "/app/cases" }, "Back to the cases")));
    return;
  }
  if (signal.aborted) return;
  document.title = `${kase.reference}${tab ? ` · ${tab.label}` : ""} · casebook`;
  root.dataset.caseId = kase.id;
  root.append(
    el("p", { class: "crumbs" }, el("a", { href: "/app/cases" }, "Cases"), " / ", kase.reference),
    el("h1", { id: "case-title" }, `${kase.reference} — ${kase.title}`),
    el("p", { class: "meta", id: "case-meta" }, statusBadge(kase.status), " ", priorityBadge(kase.priority),
      " · assigned to ", el("span", { id: "case-assignee" }, kase.assignee ? kase.assignee.full_name : "nobody"),
      ` · opened ${date(kase.opened_on)}`,
      kase.closed_on ? ` · closed ${date(kase.closed_on)}` : ""),
    // Edited through lockstep's outbox (offline.js), on every tab; reviewers may not edit.
    ...(ctx.can("analyst", "admin") ? [caseEditor(ctx, kase)] : []),
    el("nav", { class: "tabs", "aria-label": "Case sections" }, TABS.map((t) =>
      el("a", { href: `/app/cases/${kase.id}/${t.id}`, "aria-current": t === tab ? "page" : null }, t.label))));
  const panel = el("section", { class: "panel", "aria-labelledby": "tab-title" });
  root.append(panel);
  if (!tab) {
    panel.append(el("h2", { id: "tab-title" }, "No such tab"), el("p", {}, el("a", { href: `/app/cases/${kase.id}` }, "Overview")));
    return;
  }
  const listeners = [];
  const stop = live.follow(`case:${kase.id}`,
    (data) => { for (const fn of listeners) fn(data); },
    () => { for (const fn of listeners) fn(null); },
    () => { root.dataset.live = "subscribed"; }); // tests wait for it
  signal.addEventListener("abort", stop);
  const module = await loading;
  if (signal.aborted) return;
  const redraw = (tables, draw) => {
    const again = live.debounce(draw);
    listeners.push((data) => { if (!data || tables.includes(data.table)) again(); });
    return draw();
  };
  await module.render({ ...ctx, root: panel, redraw }, kase);
}
