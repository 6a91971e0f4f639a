// A case's imports: the history (status, rows, rejects download) for everyone, and for
// analysts and admins the import form: a file a saved profile reads without questions
// imports at once; any other opens the mapping page (what each column holds, the decisions
// it will not guess), where it can be corrected and saved as a profile.
import { call, download, errorBox, send } from "../api.js";
import { count, date, el, label, money, table, use } from "../format.js";
import * as live from "../live.js";

const ROLES = ["booking_date", "value_date", "amount", "debit", "credit", "direction", "currency",
  "counterparty", "counterparty_account", "description", "reference", "balance", "category", "kind"];

function history(records) {
  return table([
    { label: "File", value: (r) => `${r.filename} (${r.format})` },
    { label: "Status", value: (r) => el("span", { class: `badge ${r.status}` }, label(r.status)) },
    { label: "Imported", num: true, value: (r) => count(r.rows_imported) },
    { label: "Rejected", num: true, value: (r) => count(r.rows_rejected) },
    { label: "Uploaded", value: (r) => date(r.created_at) },
    { label: "Rejects", value: (r) => (r.rejects_url
      ? el("button", { type: "button", class: "link", onclick: () => download(r.rejects_url, `import-${r.id}-rejects.csv`) }, "Download rejects")
      : "") },
    { label: "Note", value: (r) => r.message || "" },
  ], records, { id: "import-history", caption: "Imports", empty: "No statement imported into this case yet." });
}

export async function render({ root, can, signal, redraw }, kase) {
  root.append(el("h2", { id: "tab-title" }, "Imports"));
  if (can("analyst", "admin")) root.append(importer(kase));
  const list = el("div", {});
  root.append(el("h3", {}, "History"), list);
  const draw = async () => {
    try {
      list.replaceChildren(history((await call(`/cases/${kase.id}/imports`, { signal })).items));
    } catch (error) {
      if (!signal.aborted) list.replaceChildren(errorBox(error, "Could not load the imports"));
    }
  };
  await redraw(["imports"], draw);
}

function importer(kase) {
  const box = use("t-import");
  const [form, mapping, status, rejects] = box.children;
  const say = (text) => { status.textContent = text; };
  let pending = null; // the file and preview waiting on the mapping page

  const failed = (error) => {
    say(error.message);
    const found = (error.details && error.details.rejects) || [];
    rejects.replaceChildren(...found.map((r) => el("li", {},
      `row ${r.row}${r.column ? `, ${r.column}` : ""}: ${r.reason}${r.value ? ` (${r.value})` : ""}`)));
  };
  const hideMapping = () => { pending = null; mapping.hidden = true; form.hidden = false; };

  // Upload, then wait for the import job's outcome: the server holds the request up to 30 s
  // (Prefer: wait); a longer import is followed on GET /imports/{id} until it settles.
  async function upload(file, answers, extra) {
    const body = new FormData();
    body.append("file", file);
    const params = new URLSearchParams(extra);
    if (form.skip_invalid.checked) params.set("policy", "skip_invalid");
    for (const [key, value] of Object.entries(answers)) params.append("map", `${key}=${value}`);
    say(`uploading ${file.name}…`);
    let record;
    try {
      const response = await send(`/cases/${kase.id}/imports${params.toString() ? `?${params}` : ""}`, {
        method: "POST", body, headers: { Prefer: "wait=30" },
      });
      record = await response.json();
    } catch (error) { failed(error); return; }
    const stop = record.job_id ? live.follow(`job:${record.job_id}`, (p) => {
      if (p.total) say(`importing… ${Math.round((100 * p.current) / p.total)}%`);
    }) : () => {};
    try {
      while (record.status === "queued" || record.status === "running") {
        say(`import ${record.status}…`);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        record = await call(`/imports/${record.id}`);
      }
    } finally { stop(); }
    if (record.status === "imported") {
      const rejected = record.rows_rejected ? `, ${record.rows_rejected} rejected` : "";
      say(`imported ${record.rows_imported} transactions${rejected}`);
      form.reset();
    } else {
      say(`import ${record.status}: ${record.message || ""}`);
    }
  }

  // Preview first: a file its organization's profile reads without questions imports at
  // once; any other goes to the mapping page.
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.file.files[0];
    rejects.replaceChildren();
    say(`reading ${file.name}…`);
    const body = new FormData();
    body.append("file", file);
    let preview;
    try {
      preview = await (await send(`/cases/${kase.id}/imports/preview`, { method: "POST", body })).json();
    } catch (error) { failed(error); return; }
    if (preview.ready && preview.profile) { await upload(file, {}, {}); return; }
    pending = { file, preview };
    fillMapping(mapping, file, preview);
    form.hidden = true;
    mapping.hidden = false;
    mapping.querySelector("select").focus();
  });
  mapping.addEventListener("submit", async (event) => {
    event.preventDefault();
    const extra = mapping.profile.value.trim() ? { save_profile: mapping.profile.value.trim() } : {};
    const { file, preview } = pending;
    const answers = answersOf(mapping, preview.mapping);
    hideMapping();
    await upload(file, answers, extra).catch((error) => say(error.message));
  });
  mapping.querySelector("#mapping-cancel").addEventListener("click", hideMapping);
  return box;
}

function fillMapping(form, file, preview) {
  const mapping = preview.mapping;
  const columns = mapping.header.map((text, i) => text.trim() || `column ${i + 1}`);
  const $ = (id) => form.querySelector(`#${id}`);
  $("mapping-file").textContent = file.name;
  $("mapping-source").textContent = `${preview.format}, ${preview.encoding}` +
    (preview.profile ? `, profile ${preview.profile.name}` : ", no saved profile matches");
  $("mapping-questions").replaceChildren(...preview.questions.map((q) => el("li", {}, q.text)));
  const notes = [
    ...preview.warnings,
    ...preview.preamble.map((line) => `before the table (not imported): ${line}`),
    ...preview.trailer.map((t) => `after the table, line ${t.line} (not imported): ${t.text}`),
  ];
  $("mapping-warnings").replaceChildren(...notes.map((w) => el("li", {}, w)));
  $("mapping-roles").replaceChildren(...ROLES.map((role) => el("tr", {},
    el("td", {}, label(role)),
    el("td", {}, el("select", { name: `role:${role}`, "aria-label": `${label(role)} column` },
      el("option", { value: "", selected: !(role in mapping.columns) }, "(none)"),
      columns.map((c) => el("option", { value: c, selected: mapping.columns[role] === c }, c)))))));
  form.date_order.value = mapping.date_order || "";
  form.decimal.value = mapping.decimal || "";
  form.sign.value = mapping.sign;
  form.currency.value = mapping.currency || "";
  const shown = ["booking_date", "amount", "currency", "counterparty", "description"];
  $("mapping-head").replaceChildren(el("tr", {}, ["line", ...shown].map((n) => el("th", {}, label(n)))));
  $("mapping-rows").replaceChildren(...preview.rows.map((row) => el("tr", {},
    el("td", {}, row.line),
    row.errors
      ? el("td", { class: "error", colspan: shown.length }, row.errors.map((e) => `${e.column}: ${e.reason}`).join("; "))
      : shown.map((n) => el("td", { class: n === "amount" ? "num" : null },
        n === "amount" ? money(row.values[n], row.values.currency || mapping.currency) : row.values[n] ?? "")))));
}

// What the person changed or answered, as map=key=value pairs.
function answersOf(form, mapping) {
  const answers = {};
  for (const role of ROLES) {
    const chosen = form[`role:${role}`].value;
    if (chosen !== (mapping.columns[role] || "")) answers[role] = chosen;
  }
  for (const key of ["date_order", "decimal", "sign"]) {
    if (form[key].value && form[key].value !== mapping[key]) answers[key] = form[key].value;
  }
  if (form.currency.value && form.currency.value.toUpperCase() !== mapping.currency) {
    answers.currency = form.currency.value.toUpperCase();
  }
  return answers;
}

