// A case's counterparties: who money went to and came from, with counts and totals per
// direction; a name opens its drill-down (?name=…): totals by month and its ledger.
import { call, errorBox } from "../api.js";
import { legend, mainCurrency, monthlyChart } from "../charts.js";
import { count, date, el, money, month as monthName, more, table } from "../format.js";
import { ledger, transactionColumns } from "./case-transactions.js";

const shown = (name) => name || "(no counterparty)";

function totalsText(totals, direction) {
  const rows = totals.filter((t) => t.direction === direction);
  return rows.length ? rows.map((t) => `${money(t.amount_cents, t.currency)} (${count(t.count)})`).join(", ") : "–";
}

async function list(root, kase, signal) {
  const link = (name) => `/app/cases/${kase.id}/counterparties?${new URLSearchParams({ name })}`;
  const columns = [
    { label: "Counterparty", value: (c) => el("a", { href: link(c.name) }, shown(c.name)) },
    { label: "Entries", num: true, value: (c) => count(c.count) },
    { label: "Credits (in)", num: true, value: (c) => el("span", { class: "credit" }, totalsText(c.totals, "credit")) },
    { label: "Debits (out)", num: true, value: (c) => el("span", { class: "debit" }, totalsText(c.totals, "debit")) },
    { label: "First", value: (c) => date(c.first_posted_on) },
    { label: "Last", value: (c) => date(c.last_posted_on) },
  ];
  const path = `/cases/${kase.id}/counterparties?limit=100`;
  const page = await call(path, { signal });
  const rows = table(columns, page.items, { id: "counterparty-rows", caption: "Counterparties", empty: "No transactions in this case yet." });
  return [rows, more("More counterparties", rows, columns, page.next_cursor,
    (cursor) => call(`${path}&cursor=${encodeURIComponent(cursor)}`, { signal }))];
}

async function drill(root, kase, name, signal) {
  const detail = await call(`/cases/${kase.id}/counterparty?${new URLSearchParams({ name })}`, { signal });
  const currency = mainCurrency(detail.totals);
  const byMonth = new Map();
  for (const m of detail.months.filter((x) => x.currency === currency)) {
    const row = byMonth.get(m.month) || { month: m.month, credit: 0, debit: 0 };
    row[m.direction] += m.amount_cents;
    byMonth.set(m.month, row);
  }
  const months = [...byMonth.values()];
  const ledgerPath = `/cases/${kase.id}/transactions?${new URLSearchParams({ counterparty: name, limit: "50" })}`;
  return [
    el("p", {}, el("a", { href: `/app/cases/${kase.id}/counterparties` }, "← All counterparties")),
    el("h3", { id: "counterparty-name" }, shown(name)),
    el("p", { class: "meta", id: "counterparty-totals" }, `${count(detail.count)} entries · in: ${totalsText(detail.totals, "credit")} · out: ${totalsText(detail.totals, "debit")}`),
    months.length ? [monthlyChart(months, currency, { width: root.clientWidth || 720,
      href: (m) => `/app/cases/${kase.id}/transactions?${new URLSearchParams({ counterparty: name, month: m })}` }), legend(currency)] : null,
    table([
      { label: "Month", value: (m) => monthName(m.month) },
      { label: "Credits", num: true, value: (m) => el("span", { class: "credit" }, money(m.credit, currency)) },
      { label: "Debits", num: true, value: (m) => el("span", { class: "debit" }, money(m.debit, currency)) },
    ], [...months].reverse(), { id: "counterparty-months", caption: `By month in ${currency}`, empty: "No activity." }),
    el("h3", { id: "counterparty-ledger", tabindex: "-1" }, "Transactions"),
    ...await ledger(ledgerPath, transactionColumns(kase.subjects), { id: "txn-rows", caption: "Transactions", empty: "No transactions." }, signal),
  ];
}

export async function render({ root, query, signal, redraw }, kase) {
  const results = el("div", { "aria-live": "polite" });
  root.append(el("h2", { id: "tab-title" }, "Counterparties"), results);
  const name = query.has("name") ? query.get("name") : null;
  await redraw(["transactions"], async () => {
    try {
      results.replaceChildren(...(await (name === null ? list(root, kase, signal) : drill(root, kase, name, signal))).flat());
    } catch (error) {
      results.replaceChildren(errorBox(error, "Could not load the counterparties"));
    }
  });
}
