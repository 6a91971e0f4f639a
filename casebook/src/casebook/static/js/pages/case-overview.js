// A case's overview: totals per currency and direction, and activity by category (chart and
// table) — read from the case rollup, so it costs key lookups however long the ledger is.
// A category links to the transactions tab filtered to it. Redrawn live when the case's
// ledger or imports change.
import { call, errorBox } from "../api.js";
import { byCategory, categoryChart, legend, mainCurrency } from "../charts.js";
import { card, count, date, el, money, table } from "../format.js";

export function totalsCards(totals) {
  const currencies = [...new Set(totals.map((t) => t.currency))];
  return el("div", { class: "cards" }, currencies.flatMap((currency) => {
    const of = (direction) => totals.find((t) => t.currency === currency && t.direction === direction) || { count: 0, amount_cents: 0 };
    const credit = of("credit"), debit = of("debit");
    return [
      card("Money in (credits)", money(credit.amount_cents, currency), `${count(credit.count)} transactions`),
      card("Money out (debits)", money(debit.amount_cents, currency), `${count(debit.count)} transactions`),
      card("Net", money(credit.amount_cents - debit.amount_cents, currency), "credits − debits"),
    ];
  }));
}

export async function render({ root, signal, redraw }, kase) {
  const body = el("div", {});
  root.append(el("h2", { id: "tab-title" }, "Overview"), body);
  const draw = async () => {
    let board;
    try {
      board = await call(`/cases/${kase.id}/dashboard`, { signal });
    } catch (error) {
      if (!signal.aborted) body.replaceChildren(errorBox(error, "Could not load the case's figures"));
      return;
    }
    if (!board.categories.length) {
      body.replaceChildren(el("p", { class: "empty" }, "No transactions in this case yet. ",
        el("a", { href: `/app/cases/${kase.id}/imports` }, "Import a bank statement"), " to see its activity here."));
      return;
    }
    const currency = mainCurrency(board.categories);
    const first = board.totals.map((t) => t.first_posted_on).filter(Boolean).sort()[0];
    const last = board.totals.map((t) => t.last_posted_on).filter(Boolean).sort().pop();
    const link = (category) => `/app/cases/${kase.id}/transactions?category=${encodeURIComponent(category)}`;
    body.replaceChildren(
      totalsCards(board.totals),
      el("p", { class: "hint" }, `Activity from ${date(first)} to ${date(last)}, flagged transactions included.`),
      el("h3", {}, "Activity by category"),
      legend(currency),
      categoryChart(byCategory(board.categories, currency), currency, { href: link, width: body.clientWidth }),
      table([
        { label: "Category", value: (c) => el("a", { href: link(c.category) }, c.category) },
        { label: "Direction", value: (c) => c.direction },
        { label: "Count", num: true, value: (c) => count(c.count) },
        { label: "Total", num: true, value: (c) => money(c.amount_cents, c.currency) },
        { label: "Largest", num: true, value: (c) => money(c.largest_cents, c.currency) },
        { label: "First", value: (c) => date(c.first_posted_on) },
        { label: "Last", value: (c) => date(c.last_posted_on) },
      ], board.categories, { id: "dashboard-rows", caption: "Activity by category and direction" }));
  };
  await redraw(["transactions", "imports"], draw);
}
