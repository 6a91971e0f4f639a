// The review queue (reviewers and admins): flagged transactions, most urgent then oldest
// (the API's order), filtered by status and case (in the URL). Claim takes a lease; its
// holder decides (an outcome and a required reason) or releases it. The queue:{org} channel
// redraws the page when anyone claims, releases, decides or flags.
import { call, errorBox } from "../api.js";
import { date, el, filters, money, more, priorityBadge, statusBadge, table } from "../format.js";
import * as live from "../live.js";
import * as offline from "../offline.js";

const OUTCOMES = ["cleared", "suspicious", "escalate"];

/** id → name, from the organization's directory (every role may read it). */
export async function people(me, signal) {
  const names = new Map([[me.id, "you"]]);
  try {
    for (const u of (await call("/people", { signal })).items) if (u.id !== me.id) names.set(u.id, u.full_name);
  } catch { /* ids only */ }
  return (id) => (id == null ? "" : names.get(id) || `user #${id}`);
}

function filterForm() {
  return el("form", { class: "filters", role: "search", "aria-label": "Filter the queue" },
    el("label", {}, "Status ", el("select", { name: "status" },
      el("option", { value: "" }, "pending"), el("option", { value: "decided" }, "decided"), el("option", { value: "all" }, "all"))),
    el("label", {}, "Case id ", el("input", { name: "case", type: "text", inputmode: "numeric", pattern: "\\d{1,10}", size: 6 })),
    el("span", { class: "actions" }, el("button", { type: "submit" }, "Filter"), " ",
      el("a", { class: "button secondary", href: "/app/review" }, "Clear")));
}

export async function render({ root, query, me, navigate, signal }) {
  document.title = "Review queue · casebook";
  const form = filters(filterForm(), query, "/app/review", navigate);
  form.status.addEventListener("change", () => form.requestSubmit());
  const message = el("div", { id: "review-message", "aria-live": "polite", tabindex: -1 });
  const results = el("div", {});
  root.append(el("h1", {}, "Review queue"),
    el("p", { class: "hint" }, "Claim an item to review it: the lease is yours for a while, then you decide it or release it. Nobody decides an item they flagged or one of a case assigned to them."),
    form, message, results);

  const params = new URLSearchParams({ limit: "50" });
  const status = query.get("status") || "pending";
  if (status !== "all") params.set("status", status);
  if (query.get("case")) params.set("case_id", query.get("case"));
  const name = await people(me, signal);

  const act = async (item, action, body) => {
    message.replaceChildren();
    try {
      await call(`/adjudication/${item.id}/${action}`, body
        ? { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }
        : { method: "POST" });
      message.replaceChildren(el("p", { role: "status" }, `Item #${item.id}: ${{ claim: "claimed, the lease is yours", release: "released", decide: "decided" }[action]}.`));
    } catch (error) {
      message.replaceChildren(errorBox(error, `Item #${item.id}: could not ${action} it`));
    }
    await draw();
    // The button pressed is gone with the redraw: keep keyboard users where the answer is.
    if (!document.activeElement || !document.activeElement.isConnected || document.activeElement === document.body) message.focus();
  };

  // Decisions queued in the outbox and not yet applied by the server (offline.js).
  let waiting = new Map();
  const decideQueued = async (item, outcome, reason) => {
    message.replaceChildren();
    let queued = false;
    try {
      queued = await offline.decide(item, outcome, reason);
    } catch (error) {
      message.replaceChildren(errorBox(error, `Item #${item.id}: could not queue the decision`));
      return;
    }
    if (!queued) { await act(item, "decide", { outcome, reason }); return; }
    message.replaceChildren(el("p", { role: "status" },
      `Item #${item.id}: decided; the decision is sent now, or kept here until the network is back.`));
    await draw();
    if (!document.activeElement || !document.activeElement.isConnected || document.activeElement === document.body) message.focus();
  };

  const held = (i) => i.claimed_by_id != null && i.claimed_until && Date.parse(i.claimed_until) > Date.now();
  const lease = (i) => {
    const queued = i.status !== "decided" && waiting.get(i.id);
    if (queued) {
      return el("span", { class: "pending-decision" }, el("span", { class: "badge" }, queued.outcome),
        ` “${queued.reason}” — waiting to sync`);
    }
    if (i.status === "decided") {
      return el("span", {}, el("span", { class: `badge ${i.outcome === "cleared" ? "ready" : "flagged"}` }, i.outcome),
        ` by ${name(i.decided_by_id)}, ${date(i.decided_at)}: “${i.decision_reason}”`);
    }
    if (!held(i)) return el("span", { class: "hint" }, "free");
    return `claimed by ${name(i.claimed_by_id)} until ${date(i.claimed_until)}`;
  };
  const actions = (i) => {
    if (i.status === "decided" || waiting.has(i.id)) return "";
    const mine = held(i) && i.claimed_by_id === me.id;
    const out = [];
    if (!mine) out.push(el("button", { type: "button", onclick: () => act(i, "claim") }, "Claim"));
    if (held(i) && (mine || me.role === "admin")) {
      out.push(" ", el("button", { type: "button", class: "secondary", onclick: () => act(i, "release") }, "Release"));
    }
    if (mine) {
      const decide = el("form", { class: "decide", "aria-label": `Decide item ${i.id}` },
        el("label", {}, "Outcome ", el("select", { name: "outcome", required: true },
          OUTCOMES.map((o) => el("option", { value: o }, o)))),
        el("label", {}, "Reason ", el("input", { name: "reason", required: true, maxlength: 2000, pattern: ".*\\S.*" })),
        el("button", { type: "submit" }, "Decide"));
      decide.addEventListener("submit", (event) => {
        event.preventDefault();
        decideQueued(i, decide.outcome.value, decide.reason.value.trim());
      });
      out.push(decide);
    }
    return el("div", { class: "row-actions" }, out);
  };
  const columns = [
    { label: "Priority", value: (i) => priorityBadge(i.priority) },
    { label: "Transaction", value: (i) => (i.transaction
      ? el("span", {}, `${date(i.transaction.posted_on)} · `, el("span", { class: i.transaction.direction }, money(i.transaction.amount_cents, i.transaction.currency)), ` · ${i.transaction.counterparty}`)
      : el("span", { class: "hint" }, "(no transaction)")) },
    { label: "Case", value: (i) => el("a", { href: `/app/cases/${i.case_id}/transactions` }, `case ${i.case_id}`) },
    { label: "Reason", value: (i) => i.reason },
    { label: "Flagged", value: (i) => `${date(i.created_at)} by ${i.flagged_by_id == null ? "a rule" : name(i.flagged_by_id)}` },
    { label: "Status", value: (i) => statusBadge(i.status) },
    { label: "Lease / decision", value: lease },
    { label: "Actions", value: actions },
  ];

  let expiry = null; // redraws when the next lease shown runs out (it shows "free" then)
  signal.addEventListener("abort", () => clearTimeout(expiry));
  const draw = async () => {
    let first;
    try {
      first = await call(`/adjudication?${params}`, { signal });
    } catch (error) {
      if (!signal.aborted) results.replaceChildren(errorBox(error, "Could not load the queue"));
      return;
    }
    waiting = await offline.pendingDecisions(first.items);
    if (signal.aborted) return;
    const list = table(columns, first.items, {
      id: "queue-items", caption: "Review queue",
      empty: status === "pending" && !query.get("case") ? "Nothing waits for review." : "No item matches these filters.",
    });
    clearTimeout(expiry);
    const ends = first.items.filter(held).map((i) => Date.parse(i.claimed_until) - Date.now());
    if (ends.length) expiry = setTimeout(draw, Math.min(...ends) + 1000);
    for (const [n, row] of [...list.querySelectorAll("tbody tr")].entries()) row.dataset.item = first.items[n].id;
    results.replaceChildren(list, more("More items", list, columns, first.next_cursor,
      (cursor) => call(`/adjudication?${params}&cursor=${encodeURIComponent(cursor)}`, { signal })));
  };
  const again = live.debounce(draw);
  const stop = live.follow(`queue:${me.organization_id}`, again, again, () => { root.dataset.live = "subscribed"; });
  signal.addEventListener("abort", stop);
  offline.onOutbox(signal, again); // a queued decision sent, or refused
  await draw();
}
