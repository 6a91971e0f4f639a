// Admins change their organization's settings: its name, the default currency (for figures
// with no transaction behind them), how long a reviewer's claim on a review item lasts, and
// the footer (classification) printed on every page of a case report. The form is read with
// its ETag and saved with If-Match, so a change another admin made meanwhile is refused
// (412), not overwritten.
import { call, errorBox, send } from "../api.js";
import { el } from "../format.js";

const JSON_HEADERS = { "Content-Type": "application/json" };

export async function render({ root, signal }) {
  document.title = "Organization · casebook";
  const status = el("div", { id: "organization-message", "aria-live": "polite" });
  const form = el("form", { class: "card", id: "organization-settings", "aria-labelledby": "organization-title" });
  root.append(el("h1", { id: "organization-title" }, "Organization"), status, form);
  let etag = null;

  const draw = async () => {
    const response = await send("/organization", { signal });
    etag = response.headers.get("ETag");
    const org = await response.json();
    form.replaceChildren(
      el("label", {}, "Name", el("input", { name: "name", required: true, maxlength: 200, value: org.name })),
      el("label", {}, "Default currency (ISO code)",
        el("input", { name: "default_currency", required: true, pattern: "[A-Z]{3}", maxlength: 3, value: org.default_currency })),
      el("label", {}, `Review claim lasts (minutes; empty: the default, ${org.adjudication_lease_minutes_default})`,
        el("input", { name: "adjudication_lease_minutes", type: "number", min: 1, max: 1440,
          value: org.adjudication_lease_minutes ?? "" })),
      el("label", {}, "Report footer (printed on every page)",
        el("input", { name: "report_footer", maxlength: 200, value: org.report_footer })),
      el("button", { type: "submit" }, "Save settings"));
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const body = {
      ...data,
      adjudication_lease_minutes: data.adjudication_lease_minutes === "" ? null : Number(data.adjudication_lease_minutes),
    };
    try {
      await call("/organization", {
        method: "PATCH", headers: { ...JSON_HEADERS, "If-Match": etag }, body: JSON.stringify(body),
      });
      status.replaceChildren(el("p", { role: "status" }, "Settings saved."));
    } catch (error) {
      status.replaceChildren(errorBox(error, "Could not save the settings"));
    }
    await draw();
  });
  await draw();
}

