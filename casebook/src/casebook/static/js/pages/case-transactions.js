// A case's ledger, newest first, with filters kept in the URL. A category and a month
// together are the dashboard's drill-down (GET /dashboard/categories/{c}/transactions:
// the transactions behind one bar); anything else reads the ledger route with its filters.
import { call, download, errorBox } from "../api.js";
import { date, el, filters, money, month as monthName, more, table, use } from "../format.js";

// counterparty and account_id come from links (a counterparty's month, an account), not the form.
const FILTERS = ["from", "to", "month", "category", "direction", "flagged", "subject_id", "min_amount", "max_amount", "counterparty", "account_id"];

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
  for (const key of FILTERS) if (key !== "month" && (q(key) || (key === "counterparty" && query.has(key)))) params.set(key, q(key));
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

/** Analysts and admins send a transaction to review: a reason (required) and a priority. */
function flagDialog(done) {
  const dialog = el("dialog", { id: "flag-dialog", "aria-labelledby": "flag-title" });
  const form = el("form", { class: "card", method: "dialog" },
    el("h3", { id: "flag-title" }, "Flag for review"), el("p", { class: "hint", id: "flag-what" }),
    el("label", {}, "Reason", el("textarea", { name: "reason", required: true, maxlength: 500, rows: 3 })),
    el("label", {}, "Priority", el("select", { name: "priority" },
      [1, 2, 3, 4, 5].map((p) => el("option", { value: p, selected: p === 3 }, `P${p}${p === 1 ? " (most urgent)" : ""}`)))),
    el("div", { id: "flag-error" }),
    el("p", { class: "actions" }, el("button", { type: "submit" }, "Flag"), " ",
      el("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel")));
  let txn = null;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = form.reason.value.trim();
    const error = form.querySelector("#flag-error");
    if (!reason) { error.replaceChildren(el("p", { class: "error", role: "alert" }, "Say why it needs a review.")); return; }
    try {
      const item = await call(`/transactions/${txn.id}/flag`, { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ reason, priority: Number(form.priority.value) }) });
      dialog.close();
      done(txn, item);
    } catch (failure) {
      error.replaceChildren(errorBox(failure, "Could not flag it"));
    }
  });
  dialog.append(form);
  return {
    dialog,
    open(t) {
      txn = t;
      form.reset();
      form.querySelector("#flag-error").replaceChildren();
      form.querySelector("#flag-what").textContent = `${date(t.posted_on)} · ${money(t.amount_cents, t.currency)} · ${t.counterparty}`;
      dialog.showModal();
    },
  };
}

export async function render({ root, query, navigate, signal, redraw, can }, kase) {
  const q = (k) => query.get(k) || "";
  const form = use("t-txn-filters");
  form.subject_id.append(...kase.subjects.map((s) => el("option", { value: s.id }, s.name)));
  form.querySelector("[data-clear]").href = `/app/cases/${kase.id}/transactions`;
  filters(form, query, `/app/cases/${kase.id}/transactions`, navigate);
  const results = el("div", { "aria-live": "polite" });
  root.append(el("h2", { id: "tab-title" }, "Transactions"), form, results);
  if (query.has("counterparty") || q("account_id")) { // filters that came from a link, not the form
    results.before(el("p", { class: "hint", id: "link-filter" },
      query.has("counterparty") ? `Only transactions with counterparty “${q("counterparty") || "(none)"}”` : `Only transactions of account ${q("account_id")}`,
      " · ", el("a", { href: `/app/cases/${kase.id}/transactions` }, "show all")));
  }

  const { path, drill } = source(kase.id, query);
  const columns = transactionColumns(kase.subjects);
  const flagged = el("p", { id: "flag-status", role: "status" });
  let draw;
  if (can("analyst", "admin")) {
    const flag = flagDialog((t, item) => {
      flagged.replaceChildren(`Flagged for review: ${money(t.amount_cents, t.currency)} · ${t.counterparty} (item #${item.id}). `,
        can("admin") ? el("a", { href: `/app/review?case=${kase.id}` }, "Open the review queue") : "");
      flagged.tabIndex = -1;
      flagged.focus(); // the row's button is gone: focus the confirmation
      draw();
    });
    root.append(flag.dialog);
    columns.push({ label: "Review", value: (t) => (t.flagged ? "" : el("button", {
      type: "button", class: "secondary", "aria-label": `Flag ${t.counterparty} ${money(t.amount_cents, t.currency)} for review`,
      onclick: () => flag.open(t),
    }, "Flag…")) });
  }
  results.before(flagged);
  if (!drill) { // the export takes the list's filters (a drill-down is the dashboard's route)
    const csvPath = path.replace("/transactions?", "/transactions.csv?").replace(/(^|[?&])limit=\d+&?/, "$1");
    const csv = el("button", { type: "button", class: "secondary", id: "ledger-csv",
      onclick: () => download(csvPath, `case-${kase.id}-ledger.csv`).catch((error) => csv.after(errorBox(error, "Could not export"))) },
      "Export CSV");
    flagged.before(el("p", { class: "hint" }, "The ledger with these filters, as a spreadsheet-safe CSV: ", csv));
  }
  const filtered = FILTERS.some((k) => q(k));
  draw = async () => results.replaceChildren(
    drill ? el("p", { class: "hint" }, `The dashboard's drill-down: ${q("flagged") === "true" ? "flagged" : "cleared"} transactions of “${q("category")}” in ${monthName(q("month"))}.`) : "",
    ...await ledger(path, columns, {
      id: "txn-rows", caption: "Transactions",
      empty: filtered ? "No transaction matches these filters." : "No transactions in this case yet.",
    }, signal));
  await redraw(["transactions"], draw);
}
