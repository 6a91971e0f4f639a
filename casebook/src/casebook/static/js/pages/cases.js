// The case list: search, filters (status, priority, assignee, opening dates) kept in the URL (so Back and
// a shared link restore them), newest first, cursor pagination ("More cases").
import { call, errorBox } from "../api.js";
import { date, el, filters, more, priorityBadge, statusBadge, table, use } from "../format.js";


const COLUMNS = [
  { label: "Reference", value: (c) => el("a", { href: `/app/cases/${c.id}` }, c.reference) },
  { label: "Title", value: (c) => c.title },
  { label: "Status", value: (c) => statusBadge(c.status) },
  { label: "Priority", value: (c) => priorityBadge(c.priority) },
  { label: "Assignee", value: (c) => (c.assignee ? c.assignee.full_name : el("span", { class: "hint" }, "unassigned")) },
  { label: "Opened", value: (c) => date(c.opened_on) },
];

export async function render({ root, query, me, navigate, signal, can }) {
  document.title = "Cases · casebook";
  const form = filters(use("t-case-filters"), query, "/app/cases", navigate);
  form.assignee.options[1].value = String(me.id);
  if (me.role === "admin") { // admins may list the users: any of them is a filter
    try {
      const users = (await call("/users", { signal })).items.filter((u) => u.id !== me.id);
      form.assignee.append(...users.map((u) => el("option", { value: u.id }, u.full_name)));
    } catch { /* "me" only */ }
  }
  form.assignee.value = query.get("assignee") || "";
  for (const s of form.querySelectorAll("select")) s.addEventListener("change", () => form.requestSubmit());
  const results = el("div", { "aria-live": "polite" });
  const heading = el("div", { class: "heading" }, el("h1", {}, "Cases"),
    can("analyst", "admin") ? el("a", { class: "button", href: "/app/cases/new" }, "New case") : "");
  root.append(heading, form, results);

  const params = new URLSearchParams({ limit: "50" });
  if (query.get("q")) params.set("q", query.get("q"));
  if (query.get("status")) params.set("status", query.get("status"));
  if (query.get("priority")) params.set("priority", query.get("priority"));
  if (query.get("assignee")) params.set("assignee_id", query.get("assignee"));
  for (const bound of ["opened_from", "opened_to"]) if (query.get(bound)) params.set(bound, query.get(bound));
  const filtered = ["q", "status", "priority", "assignee", "opened_from", "opened_to"].some((k) => query.get(k));
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
