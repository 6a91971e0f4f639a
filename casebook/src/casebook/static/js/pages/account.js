// One account (/app/accounts/{id}): who holds it, its monthly closing balance as a chart and
// a table, and its ledger (the case ledger narrowed to the account).
import { call, errorBox } from "../api.js";
import { balanceChart } from "../charts.js";
import { count, el, money, month as monthName, table } from "../format.js";
import { ledger, transactionColumns } from "./case-transactions.js";

export async function render({ root, params, signal }) {
  let account;
  try {
    account = await call(`/accounts/${params.id}`, { signal });
  } catch (error) {
    document.title = "Account · casebook";
    root.append(el("h1", {}, error.status === 404 ? "Account not found" : "Account"), errorBox(error),
      el("p", {}, el("a", { href: "/app/cases" }, "Back to the cases")));
    return;
  }
  const [kase, balance] = await Promise.all([
    call(`/cases/${account.case_id}`, { signal }),
    call(`/accounts/${account.id}/balance`, { signal }),
  ]).catch((error) => { root.append(errorBox(error, "Could not load the account")); return []; });
  if (!kase || signal.aborted) return;
  const holder = kase.subjects.find((s) => s.id === account.subject_id);
  document.title = `${account.institution} ${account.number_masked} · casebook`;
  root.append(
    el("p", { class: "crumbs" }, el("a", { href: "/app/cases" }, "Cases"), " / ",
      el("a", { href: `/app/cases/${kase.id}/subjects` }, kase.reference), " / account"),
    el("h1", { id: "account-title" }, `${account.institution} ${account.number_masked}`),
    el("p", { class: "meta" }, `held by ${holder ? holder.name : "a subject"} · ${account.currency}`));
  const width = root.clientWidth || 720;
  const months = balance.months;
  root.append(el("h2", {}, "Balance over time"));
  if (months.length) {
    root.append(balanceChart(months, balance.currency, { width }),
      el("p", { class: "hint" }, `Closing balance at each month's end: credits less debits since the account's first entry, in ${balance.currency}.`,
        balance.other_currency_count ? ` ${count(balance.other_currency_count)} entries in other currencies are left out.` : ""),
      table([
        { label: "Month", value: (m) => monthName(m.month) },
        { label: "Entries", num: true, value: (m) => count(m.count) },
        { label: "Credits", num: true, value: (m) => el("span", { class: "credit" }, money(m.credits_cents, balance.currency)) },
        { label: "Debits", num: true, value: (m) => el("span", { class: "debit" }, money(m.debits_cents, balance.currency)) },
        { label: "Closing balance", num: true, value: (m) => money(m.closing_cents, balance.currency) },
      ], [...months].reverse(), { id: "balance-rows", caption: "Monthly closing balance" }));
  } else {
    root.append(el("p", { class: "empty" }, "No entries on this account yet."));
  }
  root.append(el("h2", {}, "Ledger"), ...await ledger(`/accounts/${account.id}/transactions?limit=50`,
    transactionColumns(kase.subjects), { id: "txn-rows", caption: "Transactions", empty: "No transactions on this account." }, signal));
}
