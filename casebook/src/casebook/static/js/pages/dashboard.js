// The organization's dashboard, from the rollups (cleared activity: flagged transactions
// are counted apart, as what awaits adjudication): totals, a monthly chart, and categories.
// Drill-down: a month → its categories → the transactions behind one category and month.
// Each step is a URL (?month=…&category=…), so Back steps out again.
import { call, errorBox } from "../api.js";
import { byCategory, categoryChart, legend, mainCurrency, monthlyChart } from "../charts.js";
import { card, count, el, money, month as monthName, table } from "../format.js";
import { ledger, source, transactionColumns } from "./case-transactions.js";

function cards(summary) {
  return el("div", { class: "cards" },
    summary.cleared.map((c) => card(c.direction === "credit" ? "Money in (cleared credits)" : "Money out (cleared debits)",
      money(c.amount_cents, c.currency), `${count(c.count)} transactions · largest ${money(c.largest_cents, c.currency)}`)),
    summary.flagged.map((f) => card("Flagged (awaiting review)", money(f.amount_cents, f.currency), `${count(f.count)} transactions`)));
}

export async function render({ root, query, signal }) {
  document.title = "Dashboard · casebook";
  const chosen = query.get("month") || "";
  const category = query.get("category") || "";
  root.append(el("h1", {}, "Dashboard"));
  let summary, categories;
  try {
    [summary, categories] = await Promise.all([
      call("/dashboard/summary", { signal }),
      call(chosen ? `/dashboard/categories?from=${chosen}&to=${chosen}` : "/dashboard/categories", { signal }),
    ]);
  } catch (error) {
    root.append(errorBox(error, "Could not load the dashboard"));
    return;
  }
  if (!summary.months.length) {
    root.append(el("p", { class: "empty" }, "No transactions yet: import a statement into a case to fill the dashboard."));
    return;
  }
  const currency = mainCurrency(summary.months);
  const months = new Map();
  for (const m of summary.months.filter((r) => r.currency === currency)) {
    const row = months.get(m.month) || { month: m.month, credit: 0, debit: 0 };
    row[m.direction] += m.amount_cents;
    months.set(m.month, row);
  }
  const monthRows = [...months.values()].sort((a, b) => a.month.localeCompare(b.month));
  root.append(cards(summary),
    el("h2", {}, "Month by month"),
    legend(currency),
    monthlyChart(monthRows, currency, { href: (m) => `/app/dashboard?month=${m}`, selected: chosen, width: root.clientWidth }),
    el("details", {}, el("summary", {}, "The months as a table"), table([
      { label: "Month", value: (m) => el("a", { href: `/app/dashboard?month=${m.month}` }, monthName(m.month)) },
      { label: "Credits", num: true, value: (m) => money(m.credit, currency) },
      { label: "Debits", num: true, value: (m) => money(m.debit, currency) },
      { label: "Net", num: true, value: (m) => money(m.credit - m.debit, currency) },
    ], monthRows, { id: "month-rows", caption: "Months" })));

  const link = chosen ? (c) => `/app/dashboard?month=${chosen}&category=${encodeURIComponent(c)}` : null;
  root.append(
    el("h2", { id: "categories-title" }, chosen ? `Categories in ${monthName(chosen)}` : "Categories, all months"),
    chosen
      ? el("p", { class: "hint" }, "Choose a category to see its transactions. ", el("a", { href: "/app/dashboard" }, "All months"))
      : el("p", { class: "hint" }, "Choose a month in the chart to drill down."));
  const rows = byCategory(categories.items, currency);
  root.append(rows.length
    ? categoryChart(rows, currency, { href: link, width: root.clientWidth })
    : el("p", { class: "empty" }, "No cleared activity this month."));

  if (chosen && category) {
    const { path } = source(null, query);
    const columns = transactionColumns([], { withCase: true });
    root.append(el("h2", {}, `“${category}” in ${monthName(chosen)}`));
    root.append(...await ledger(path, columns, { id: "drill-rows", caption: "Transactions", empty: "No cleared transaction in this category and month." }, signal));
  }
}
