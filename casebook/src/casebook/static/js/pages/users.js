// Admins manage their organization's users: the list, a new user (e-mail, name, role, first
// password), a role change, deactivation and reactivation. Every change reads the user
// first and sends its ETag as If-Match, so a concurrent edit is refused (412), not lost.
import { call, errorBox, send } from "../api.js";
import { date, el, table } from "../format.js";

const ROLES = ["analyst", "reviewer", "admin"];
const JSON_HEADERS = { "Content-Type": "application/json" };
const roleSelect = (value, attrs = {}) => el("select", { name: "role", ...attrs },
  ROLES.map((r) => el("option", { value: r, selected: r === value }, r)));

export async function render({ root, me, signal }) {
  document.title = "Users · casebook";
  const status = el("div", { id: "users-message", "aria-live": "polite" });
  const list = el("div", {});
  const create = el("form", { class: "card", id: "new-user", "aria-labelledby": "new-user-title" },
    el("h2", { id: "new-user-title" }, "New user"),
    el("label", {}, "E-mail", el("input", { name: "email", type: "email", required: true, autocomplete: "off" })),
    el("label", {}, "Full name", el("input", { name: "full_name", required: true, maxlength: 200 })),
    el("label", {}, "Role", roleSelect("analyst")),
    el("label", {}, "First password (12 characters or more)",
      el("input", { name: "password", type: "password", required: true, minlength: 12, autocomplete: "new-password" })),
    el("button", { type: "submit" }, "Create user"));
  root.append(el("h1", {}, "Users"), status, list, create);

  const say = (text) => status.replaceChildren(el("p", { role: "status" }, text));
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(create));
    try {
      const user = await call("/users", { method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body) });
      create.reset();
      say(`${user.full_name} (${user.email}) can now sign in as ${user.role}.`);
    } catch (error) {
      status.replaceChildren(errorBox(error, "Could not create the user"));
    }
    await draw();
  });

  const change = async (user, changes, done) => {
    try {
      const etag = (await send(`/users/${user.id}`, { signal })).headers.get("ETag");
      await call(`/users/${user.id}`, {
        method: "PATCH", headers: { ...JSON_HEADERS, "If-Match": etag }, body: JSON.stringify(changes),
      });
      say(`${user.full_name}: ${done}.`);
    } catch (error) {
      status.replaceChildren(errorBox(error, `Could not change ${user.full_name}`));
    }
    await draw();
  };

  const columns = [
    { label: "Name", value: (u) => (u.id === me.id ? `${u.full_name} (you)` : u.full_name) },
    { label: "E-mail", value: (u) => u.email },
    { label: "Role", value: (u) => {
      if (u.id === me.id) return u.role;
      const select = roleSelect(u.role, { "aria-label": `Role of ${u.full_name}` });
      return el("span", { class: "row-actions" }, select, " ", el("button", {
        type: "button", class: "secondary",
        onclick: () => (select.value === u.role ? null : change(u, { role: select.value }, `now ${select.value}`)),
      }, "Change role"));
    } },
    { label: "Status", value: (u) => el("span", { class: `badge ${u.is_active ? "ready" : "closed"}` }, u.is_active ? "active" : "deactivated") },
    { label: "Since", value: (u) => date(u.created_at) },
    { label: "Access", value: (u) => (u.id === me.id ? "" : el("button", {
      type: "button", class: "secondary", "aria-label": `${u.is_active ? "Deactivate" : "Reactivate"} ${u.full_name}`,
      onclick: () => change(u, { is_active: !u.is_active }, u.is_active ? "deactivated and signed out everywhere" : "reactivated"),
    }, u.is_active ? "Deactivate" : "Reactivate")) },
  ];
  const draw = async () => {
    try {
      const users = (await call("/users", { signal })).items;
      list.replaceChildren(table(columns, users, { id: "user-rows", caption: "Users", empty: "No users." }));
    } catch (error) {
      if (!signal.aborted) list.replaceChildren(errorBox(error, "Could not load the users"));
    }
  };
  await draw();
}
