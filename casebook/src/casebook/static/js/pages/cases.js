// The case list: search, filters (status, priority, assignee) kept in the URL (so Back and
// a shared link restore them), newest first, cursor pagination ("More cases").
import { call, errorBox } from "../api.js";
import { date, el, label, more, priorityBadge, statusBadge, table } from "../format.js";

const STATUSES = ["open", "under_review", "closed"];


const COLUMNS = [
  { label: "Reference", value: (c) => el("a", { href: `/app/cases/${c.id}` }, c.reference) },
  { label: "Title", value: (c) => c.title },
  { label: "Status", value: (c) => statusBadge(c.status) },
  { label: "Priority", value: (c) => priorityBadge(c.priority) },
  { label: "Assignee", value: (c) => (c.assignee ? c.assignee.full_name : el("span", { class: "hint" }, "unassigned")) },
  { label: "Opened", value: (c) => date(c.opened_on) },
];

function select(name, text, options, value) {
  return el("label", {}, text, el("select", { name },
    options.map(([v, t]) => el("option", { value: v, selected: v === value }, t))));
}

export async function render({ root, query, me, navigate, signal }) {
  document.title = "Cases · casebook";
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter cases" },
    el("label", {}, "Search titles", el("input", { name: "q", type: "search", value: query.get("q") || "", maxlength: 200 })),
    select("status", "Status", [["", "any"], ...STATUSES.map((s) => [s, label(s)])], query.get("status") || ""),
    select("priority", "Priority", [["", "any"], ...[1, 2, 3, 4, 5].map((p) => [String(p), `P${p}`])], query.get("priority") || ""),
    select("assignee", "Assignee", [["", "anyone"], [String(me.id), "me"]], query.get("assignee") || ""),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (String(value).trim()) params.set(key, String(value).trim());
    navigate(`/app/cases${params.toString() ? `?${params}` : ""}`);
  });
  for (const s of form.querySelectorAll("select")) s.addEventListener("change", () => form.requestSubmit());
  const results = el("div", { "aria-live": "polite" });
  root.append(el("h1", {}, "Cases"), form, results);

  const params = new URLSearchParams({ limit: "50" });
  if (query.get("q")) params.set("q", query.get("q"));
  if (query.get("status")) params.set("status", query.get("status"));
  if (query.get("priority")) params.set("priority", query.get("priority"));
  if (query.get("assignee")) params.set("assignee_id", query.get("assignee"));
  const filtered = ["q", "status", "priority", "assignee"].some((k) => query.get(k));
  let first;
  try {
    first = await call(`/cases?${params}`, { signal });
  } catch (error) {
    results.append(errorBox(error, "Could not load the cases"));
    return;
  }
  const list = table(COLUMNS, first.items, {
    id: "case-rows", caption: "Cases",
    empty: filtered ? "No case matches these filters." : "No cases yet.",
  });
  results.append(list, more("More cases", list, COLUMNS, first.next_cursor,
    (cursor) => call(`/cases?${params}&cursor=${encodeURIComponent(cursor)}`, { signal })));
}
