// A case's ledger, newest first, with filters kept in the URL. A category and a month
// together are the dashboard's drill-down (GET /dashboard/categories/{c}/transactions:
// the transactions behind one bar); anything else reads the ledger route with its filters.
import { call, errorBox } from "../api.js";
import { date, el, filters, money, month as monthName, more, table, use } from "../format.js";

const FILTERS = ["from", "to", "month", "category", "direction", "flagged", "subject_id", "min_amount", "max_amount"];

export function transactionColumns(subjects, { withCase = false } = {}) {
  const names = new Map((subjects || []).map((s) => [s.id, s.name]));
  return [
    { label: "Posted", value: (t) => date(t.posted_on) },
    { label: "Amount", num: true, value: (t) => el("span", { class: t.direction }, money(t.amount_cents, t.currency)) },
    { label: "Direction", value: (t) => t.direction },
    { label: "Category", value: (t) => t.category },
    { label: "Counterparty", value: (t) => t.counterparty },
    withCase
      ? { label: "Case", value: (t) => el("a", { href: `/app/cases/${t.case_id}/transactions` }, `case ${t.case_id}`) }
      : { label: "Subject", value: (t) => names.get(t.subject_id) || "" },
    { label: "Flagged", value: (t) => (t.flagged ? el("span", { class: "badge flagged" }, "flagged") : "") },
  ];
}

/** The request for these filters: the drill-down route or the ledger. */
export function source(kaseId, query) {
  const q = (k) => query.get(k) || "";
  if (q("month") && q("category")) {
    const params = new URLSearchParams({ month: q("month"), limit: "50" });
    if (kaseId) params.set("case_id", kaseId);
    if (q("direction")) params.set("direction", q("direction"));
    params.set("flagged", q("flagged") === "true" ? "true" : "false");
    return { path: `/dashboard/categories/${encodeURIComponent(q("category"))}/transactions?${params}`, drill: true };
  }
  const params = new URLSearchParams({ limit: "50" });
  for (const key of FILTERS) if (key !== "month" && q(key)) params.set(key, q(key));
  if (q("month") && !q("from") && !q("to")) {
    const [y, m] = q("month").split("-").map(Number);
    params.set("from", `${q("month")}-01`);
    params.set("to", new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10));
  }
  return { path: `/cases/${kaseId}/transactions?${params}`, drill: false };
}

/** The first page of `path` as a table, and "More transactions"; or what went wrong. */
export async function ledger(path, columns, options, signal) {
  try {
    const page = await call(path, { signal });
    const list = table(columns, page.items, options);
    return [list, more("More transactions", list, columns, page.next_cursor,
      (cursor) => call(`${path}&cursor=${encodeURIComponent(cursor)}`, { signal }))];
  } catch (error) {
    return [errorBox(error, "Could not load the transactions")];
  }
}

export async function render({ root, query, navigate, signal, redraw }, kase) {
  const q = (k) => query.get(k) || "";
  const form = use("t-txn-filters");
  form.subject_id.append(...kase.subjects.map((s) => el("option", { value: s.id }, s.name)));
  form.querySelector("[data-clear]").href = `/app/cases/${kase.id}/transactions`;
  filters(form, query, `/app/cases/${kase.id}/transactions`, navigate);
  const results = el("div", { "aria-live": "polite" });
  root.append(el("h2", { id: "tab-title" }, "Transactions"), form, results);

  const { path, drill } = source(kase.id, query);
  const columns = transactionColumns(kase.subjects);
  const filtered = FILTERS.some((k) => q(k));
  await redraw(["transactions"], async () => results.replaceChildren(
    drill ? el("p", { class: "hint" }, `The dashboard's drill-down: ${q("flagged") === "true" ? "flagged" : "cleared"} transactions of “${q("category")}” in ${monthName(q("month"))}.`) : "",
    ...await ledger(path, columns, {
      id: "txn-rows", caption: "Transactions",
      empty: filtered ? "No transaction matches these filters." : "No transactions in this case yet.",
    }, signal)));
}
