// A new case (analysts and admins): reference, title, description, priority, assignee and
// opening date; the server checks every field (the reference is unique in the organization)
// and its refusal is shown next to the form, which keeps what was typed.
import { call, errorBox } from "../api.js";
import { el } from "../format.js";

const PRIORITIES = [1, 2, 3, 4, 5];

export async function render({ root, me, navigate, signal }) {
  document.title = "New case · casebook";
  const assignee = el("select", { name: "assignee_id" },
    el("option", { value: String(me.id) }, `me (${me.full_name})`), el("option", { value: "" }, "nobody yet"));
  if (me.role === "admin") {
    try {
      const users = (await call("/users", { signal })).items.filter((u) => u.id !== me.id && u.is_active);
      assignee.append(...users.map((u) => el("option", { value: String(u.id) }, `${u.full_name} (${u.role})`)));
    } catch { /* "me" and "nobody" remain */ }
  }
  const status = el("div", { id: "new-case-message", "aria-live": "polite" });
  const form = el("form", { class: "card", id: "new-case", "aria-labelledby": "new-case-title" },
    el("label", {}, "Reference", el("input", { name: "reference", required: true, maxlength: 40,
      placeholder: "e.g. FIN-2026-0042", autocomplete: "off" })),
    el("label", {}, "Title", el("input", { name: "title", required: true, maxlength: 300 })),
    el("label", {}, "Description", el("textarea", { name: "description", rows: 3, maxlength: 10000 })),
    el("label", {}, "Priority", el("select", { name: "priority" },
      PRIORITIES.map((p) => el("option", { value: String(p), selected: p === 3 }, `P${p}${p === 1 ? " (most urgent)" : ""}`)))),
    el("label", {}, "Assignee", assignee),
    el("label", {}, "Opened on", el("input", { name: "opened_on", type: "date" })),
    el("button", { type: "submit" }, "Create case"));
  root.append(el("p", { class: "crumbs" }, el("a", { href: "/app/cases" }, "Cases"), " / new"),
    el("h1", { id: "new-case-title" }, "New case"), status, form);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = Object.fromEntries(new FormData(form));
    const body = {
      reference: fields.reference.trim(), title: fields.title.trim(), description: fields.description,
      priority: Number(fields.priority), assignee_id: fields.assignee_id ? Number(fields.assignee_id) : null,
    };
    if (fields.opened_on) body.opened_on = fields.opened_on;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const kase = await call("/cases", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      await navigate(`/app/cases/${kase.id}/subjects`);
    } catch (error) {
      status.replaceChildren(errorBox(error, "Could not create the case"));
      button.disabled = false;
    }
  });
}
