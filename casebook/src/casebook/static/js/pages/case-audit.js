// A case's audit trail, newest first: who wrote what, when, and each changed field's value
// before and after (fields null on both sides left out); older entries a page at a time;
// the whole trail as CSV.
import { call, download, errorBox } from "../api.js";
import { date, el, label, more, table } from "../format.js";
import { people } from "./review.js";

const shown = (v) => {
  const text = v == null ? "–" : typeof v === "string" ? v : JSON.stringify(v);
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
};

function changes(entry) {
  const items = Object.entries(entry.changes || {}).filter(([, v]) => !(Array.isArray(v) && v[0] == null && v[1] == null)).map(([field, v]) => (Array.isArray(v) && v.length === 2 && entry.row_key != null
    ? el("li", {}, el("code", {}, field), `: ${shown(v[0])} → ${shown(v[1])}`)
    : el("li", {}, el("code", {}, field), `: ${shown(v)}`)));
  return items.length ? el("ul", { class: "changes" }, items) : "";
}

export async function render({ root, me, signal, redraw }, kase) {
  const name = await people(me, signal);
  const who = (actor) => {
    const m = /^user:(\d+)$/.exec(actor || "");
    return m ? name(Number(m[1])) : actor || "–";
  };
  const columns = [
    { label: "When", value: (e) => date(e.at) },
    { label: "Who", value: (e) => who(e.actor) },
    { label: "Table", value: (e) => label(e.table) },
    { label: "Row", value: (e) => e.row_key ?? "" },
    { label: "Operation", value: (e) => e.op },
    { label: "Changes", value: changes },
  ];
  const csv = el("button", { type: "button", class: "secondary", id: "audit-csv",
    onclick: () => download(`/cases/${kase.id}/audit.csv`, `case-${kase.id}-audit.csv`).catch((error) => csv.after(errorBox(error, "Could not export"))) },
  "Download CSV (every changed field)");
  const results = el("div", { "aria-live": "polite" });
  root.append(el("h2", { id: "tab-title" }, "Audit"),
    el("p", { class: "hint" }, "Every write touching this case, newest first. ", csv), results);
  const path = `/cases/${kase.id}/audit?limit=50`;
  await redraw(["transactions", "subjects", "imports", "reports", "cases", "adjudication_items"], async () => {
    try {
      const page = await call(path, { signal });
      const list = table(columns, page.items, { id: "audit-rows", caption: "Audit trail", empty: "Nothing recorded for this case yet." });
      results.replaceChildren(list, more("Older entries", list, columns, page.next_cursor,
        (cursor) => call(`${path}&cursor=${encodeURIComponent(cursor)}`, { signal })));
    } catch (error) {
      if (!signal.aborted) results.replaceChildren(errorBox(error, "Could not load the audit trail"));
    }
  });
}
