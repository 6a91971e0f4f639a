// A case's subjects: the people and companies under investigation, the accounts each holds
// and its consent records. A subject without valid consent today is marked in the table and
// in its section (the status comes from the server: casebook.consent decides it).
import { call, errorBox, send } from "../api.js";
import { date, el, label, table } from "../format.js";
import { subjectNotes } from "../offline.js";

const RISK = ["", "very low", "low", "medium", "high", "very high"];
const BASES = ["consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests"];
const STATUS_TEXT = { valid: "consent valid", expired: "consent expired", revoked: "consent revoked", none: "no consent recorded" };
const JSON_HEADERS = { "Content-Type": "application/json" };

/** The consent marker: a badge whose words say it (not only its colour). */
export function consentBadge(status, until) {
  const text = STATUS_TEXT[status] || status;
  return el("span", { class: `badge consent ${status}`, "data-consent": status },
    status === "valid" ? (until ? `${text} until ${date(until)}` : text) : `⚠ ${text}`);
}

/** A write carrying the resource's current validator (If-Match): a 412 says someone changed it. */
async function guarded(url, method, body) {
  const current = await send(url);
  return call(`${url}${method === "POST" ? "/revoke" : ""}`, {
    method, headers: { ...JSON_HEADERS, "If-Match": current.headers.get("ETag") }, body: JSON.stringify(body),
  });
}

function fieldsOf(form) {
  return Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, String(v).trim()]));
}

function accountForm(subject, done) {
  const idBase = `acct-${subject.id}`;
  const form = el("form", { class: "edit", id: `${idBase}-form`, "aria-label": `Account for ${subject.name}` },
    el("label", {}, "Institution", el("input", { name: "institution", required: true, maxlength: 200 })),
    el("label", {}, "IBAN or number", el("input", { name: "identifier", required: true, maxlength: 42, autocomplete: "off" })),
    el("label", {}, "Currency", el("input", { name: "currency", required: true, value: "EUR", pattern: "[A-Z]{3}", maxlength: 3, size: 4 })),
    el("button", { type: "submit" }, "Add account"),
    el("button", { type: "button", class: "secondary", hidden: true, "data-cancel": "" }, "Cancel"),
    el("div", { class: "form-error" }));
  let editing = null;
  const submit = form.querySelector("button[type=submit]");
  const cancel = form.querySelector("[data-cancel]");
  const reset = () => {
    editing = null; form.reset(); submit.textContent = "Add account"; cancel.hidden = true; form.identifier.required = true;
    form.querySelector(".form-error").replaceChildren();
  };
  cancel.addEventListener("click", reset);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = fieldsOf(form);
    if (editing && !body.identifier) delete body.identifier; // keep the stored number
    try {
      if (editing) await guarded(`/accounts/${editing.id}`, "PATCH", body);
      else await call(`/subjects/${subject.id}/accounts`, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body) });
      reset();
      done();
    } catch (error) {
      form.querySelector(".form-error").replaceChildren(errorBox(error, "Could not save the account"));
    }
  });
  return {
    form,
    edit(account) {
      editing = account;
      form.institution.value = account.institution;
      form.identifier.value = "";
      form.identifier.required = false;
      form.identifier.placeholder = `${account.number_masked} (leave empty to keep)`;
      form.currency.value = account.currency;
      submit.textContent = "Save account";
      cancel.hidden = false;
      form.institution.focus();
    },
  };
}

function consentForm(subject, done) {
  const form = el("form", { class: "edit", id: `consent-${subject.id}-form`, "aria-label": `Consent for ${subject.name}` },
    el("label", {}, "Purpose", el("input", { name: "purpose", required: true, maxlength: 100, value: "investigation" })),
    el("label", {}, "Legal basis", el("select", { name: "legal_basis" }, BASES.map((b) => el("option", { value: b }, label(b))))),
    el("label", {}, "Granted on", el("input", { name: "granted_on", type: "date", required: true, value: new Date().toISOString().slice(0, 10) })),
    el("label", {}, "Expires on (optional)", el("input", { name: "expires_on", type: "date" })),
    el("label", {}, "Document", el("input", { name: "document_ref", maxlength: 200 })),
    el("button", { type: "submit" }, "Record consent"),
    el("div", { class: "form-error" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = fieldsOf(form);
    if (!body.expires_on) delete body.expires_on;
    try {
      await call(`/subjects/${subject.id}/consents`, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body) });
      form.reset();
      form.querySelector(".form-error").replaceChildren();
      done();
    } catch (error) {
      form.querySelector(".form-error").replaceChildren(errorBox(error, "Could not record the consent"));
    }
  });
  return form;
}

function subjectForm(kase, done) {
  const form = el("form", { class: "edit", id: "subject-form", "aria-label": "New subject" },
    el("label", {}, "Name", el("input", { name: "name", required: true, maxlength: 200 })),
    el("label", {}, "Kind", el("select", { name: "kind" },
      el("option", { value: "person" }, "person"), el("option", { value: "company" }, "company"))),
    el("label", {}, "Identifier (tax id, registration no.)", el("input", { name: "identifier", maxlength: 64, autocomplete: "off" })),
    el("label", {}, "Country (ISO code)", el("input", { name: "country", maxlength: 2, size: 3, pattern: "[A-Za-z]{2}", autocomplete: "off" })),
    el("label", {}, "Risk", el("select", { name: "risk_level" },
      RISK.slice(1).map((text, i) => el("option", { value: String(i + 1) }, `${i + 1} · ${text}`)))),
    el("button", { type: "submit" }, "Add subject"),
    el("div", { class: "form-error" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = fieldsOf(form);
    body.country = body.country.toUpperCase();
    body.risk_level = Number(body.risk_level);
    try {
      await call(`/cases/${kase.id}/subjects`, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body) });
      form.reset();
      form.querySelector(".form-error").replaceChildren();
      done();
    } catch (error) {
      form.querySelector(".form-error").replaceChildren(errorBox(error, "Could not add the subject"));
    }
  });
  return form;
}

// A subject's forms outlive the redraws (another user's write redraws the tab): what the
// user typed, and an error shown, stay where they were.
const kept = new WeakMap();

function formsOf(holder, subject, refresh) {
  let forms = kept.get(holder);
  if (!forms) kept.set(holder, (forms = new Map()));
  if (!forms.has(subject.id)) forms.set(subject.id, { account: accountForm(subject, refresh), consent: consentForm(subject, refresh) });
  return forms.get(subject.id);
}

async function subjectSection(ctx, subject, accounts, status, refresh) {
  const editable = ctx.can("analyst", "admin");
  const consents = await call(`/subjects/${subject.id}/consents`, { signal: ctx.signal });
  const section = el("section", { class: "subject", id: `subject-${subject.id}`, "aria-labelledby": `subject-${subject.id}-name` },
    el("h3", { id: `subject-${subject.id}-name` }, subject.name, " ", consentBadge(status.status, status.until)));
  const forms = editable ? formsOf(ctx.root, subject, refresh) : null;
  const form = forms ? forms.account : null;
  section.append(el("h4", {}, "Accounts"), table([
    { label: "Institution", value: (a) => el("a", { href: `/app/accounts/${a.id}` }, a.institution) },
    { label: "Number", value: (a) => a.number_masked },
    { label: "Currency", value: (a) => a.currency },
    ...(editable ? [{ label: "Edit", value: (a) => el("button", { type: "button", class: "secondary",
      "aria-label": `Edit account ${a.number_masked} at ${a.institution}`, onclick: () => form.edit(a) }, "Edit…") }] : []),
  ], accounts, { id: `accounts-${subject.id}`, caption: `Accounts of ${subject.name}`, empty: "No accounts recorded." }));
  if (form) section.append(form.form);
  section.append(el("h4", {}, "Consent"), table([
    { label: "Purpose", value: (c) => c.purpose },
    { label: "Legal basis", value: (c) => label(c.legal_basis) },
    { label: "Granted", value: (c) => date(c.granted_on) },
    { label: "Expires", value: (c) => (c.expires_on ? date(c.expires_on) : "–") },
    { label: "Revoked", value: (c) => (c.revoked_on ? date(c.revoked_on) : "–") },
    { label: "Document", value: (c) => c.document_ref || "" },
    ...(editable ? [{ label: "Revoke", value: (c) => (c.revoked_on ? "" : el("button", { type: "button", class: "secondary",
      "aria-label": `Revoke consent for ${c.purpose} granted ${date(c.granted_on)}`,
      onclick: async (event) => {
        try { await guarded(`/consents/${c.id}`, "POST", {}); refresh(); } catch (error) { event.target.after(errorBox(error, "Could not revoke")); }
      } }, "Revoke")) }] : []),
  ], consents.items, { id: `consents-${subject.id}`, caption: `Consent records of ${subject.name}`, empty: "No consent recorded." }));
  if (forms) section.append(forms.consent);
  return section;
}

export async function render(ctx, kase) {
  const { root, signal } = ctx;
  const editable = ctx.can("analyst", "admin"); // reviewers read the notes
  const details = el("div", { id: "subject-details", "aria-live": "polite" });
  const summary = el("div", { id: "subject-summary" });
  root.append(el("h2", { id: "tab-title" }, "Subjects"), summary,
    el("p", { class: "hint" }, "Risk runs from 1 (very low) to 5 (very high), as the analyst assessed it. ",
      "⚠ marks a subject without valid consent today."),
    details,
    ...(editable ? [el("h3", {}, "New subject"), subjectForm(kase, () => draw())] : []),
    // Edited through lockstep's outbox (offline.js): kept offline, shown at once, live.
    ...(editable ? [el("h3", {}, "Notes"), subjectNotes(ctx, kase)] : []));
  const draw = async () => {
    let consent, accounts, subjects;
    try {
      [consent, accounts, subjects] = await Promise.all([
        call(`/cases/${kase.id}/consent`, { signal }), call(`/cases/${kase.id}/accounts?limit=200`, { signal }),
        call(`/cases/${kase.id}/subjects?limit=200`, { signal })]);
    } catch (error) {
      details.replaceChildren(errorBox(error, "Could not load accounts and consent"));
      return;
    }
    const statuses = new Map(consent.items.map((c) => [c.subject_id, c]));
    const none = { status: "none", until: null };
    summary.replaceChildren(table([
      { label: "Name", value: (s) => el("a", { href: `#subject-${s.id}` }, el("strong", {}, s.name)) },
      { label: "Kind", value: (s) => label(s.kind) },
      { label: "Identifier", value: (s) => s.identifier || "–" },
      { label: "Country", value: (s) => s.country || "–" },
      { label: "Risk", value: (s) => el("span", { class: `risk r${s.risk_level}` }, `${s.risk_level} · ${RISK[s.risk_level] || ""}`) },
      { label: "Consent", value: (s) => { const c = statuses.get(s.id) || none; return consentBadge(c.status, c.until); } },
      ...(editable ? [] : [{ label: "Notes", value: (s) => s.notes || "" }]),
    ], subjects.items, { id: "subject-rows", caption: "Subjects", empty: "No subjects recorded for this case yet." }));
    const sections = [];
    for (const subject of subjects.items) {
      const held = accounts.items.filter((a) => a.subject_id === subject.id);
      sections.push(await subjectSection(ctx, subject, held, statuses.get(subject.id) || none, draw));
    }
    details.replaceChildren(...sections);
  };
  await ctx.redraw(["subjects", "accounts", "consent_records"], draw);
}
