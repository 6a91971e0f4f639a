// casebook's small web UI: log in, page through cases, open one (its dashboard, its ledger)
// and import a bank statement into it (preview, mapping page, profiles). Open pages update
// live over the realtime connection (centrifuge-js, vendored): a case's ledger and dashboard,
// import progress, notifications.
"use strict";

const api = "/api/v1";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("casebook.token");
let casesCursor = null;
let txnCursor = null;
let currentCase = null;
let live = null;
let caseSub = null;

document.addEventListener("casebook:token", (event) => { token = event.detail; }); // offline.js

async function call(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(api + path, { ...options, headers });
  if (response.status === 401) { logout(); throw new Error("please log in again"); }
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
}

function show(section) {
  for (const id of ["login", "cases", "case"]) $(id).hidden = id !== section;
  $("logout").hidden = section === "login";
}

function logout() {
  token = null;
  sessionStorage.removeItem("casebook.token");
  sessionStorage.removeItem("casebook.refresh");
  if (live) { live.disconnect(); live = null; }
  $("who").textContent = "";
  show("login");
}

async function loadCases(reset) {
  if (reset) { $("case-rows").replaceChildren(); casesCursor = null; }
  const query = casesCursor ? `?cursor=${encodeURIComponent(casesCursor)}` : "";
  const page = await call(`/cases${query}`);
  for (const c of page.items) {
    const tr = document.createElement("tr");
    tr.className = "link";
    tr.dataset.id = c.id;
    cell(tr, c.reference); cell(tr, c.title); cell(tr, c.status); cell(tr, c.priority);
    cell(tr, c.assignee ? c.assignee.full_name : "");
    tr.addEventListener("click", () => openCase(c.id));
    $("case-rows").appendChild(tr);
  }
  casesCursor = page.next_cursor;
  $("more-cases").hidden = !casesCursor;
}

// The access token goes in the connect command (never the URL); when it expires the SDK
// asks for a new one (error 109), which the refresh token buys.
async function freshToken() {
  if (window.casebookOffline) return window.casebookOffline.refresh(); // one refresh at a time
  const refresh = sessionStorage.getItem("casebook.refresh");
  const response = await fetch(`${api}/auth/refresh`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: refresh }),
  });
  if (!response.ok) throw new Centrifuge.UnauthorizedError("please log in again");
  const body = await response.json();
  token = body.access_token;
  sessionStorage.setItem("casebook.token", token);
  sessionStorage.setItem("casebook.refresh", body.refresh_token);
  return token;
}

function connectLive() {
  if (live || !window.Centrifuge) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  live = new Centrifuge(`${scheme}://${location.host}/connection/websocket`, {
    token, getToken: freshToken,
  });
  live.on("connected", () => { $("live").textContent = "● live"; });
  live.on("connecting", () => { $("live").textContent = "○ reconnecting"; });
  // user:{id} is subscribed on the server's side: a case assigned to me changed.
  live.on("publication", (ctx) => {
    if (ctx.channel.startsWith("user:")) {
      $("notice").textContent = `case ${ctx.data.key ? ctx.data.key[0] : ""} (assigned to you) was updated`;
    }
  });
  live.connect();
}

let refreshing = null;
function refreshSoon() {
  // A burst of commits (an import) refreshes the page once.
  if (refreshing) return;
  refreshing = setTimeout(() => { refreshing = null; refreshCase(); }, 200);
}

function followCase(id) {
  if (!live) return;
  if (caseSub) { caseSub.unsubscribe(); live.removeSubscription(caseSub); caseSub = null; }
  caseSub = live.newSubscription(`case:${id}`);
  caseSub.on("publication", (ctx) => {
    if (currentCase !== id) return;
    const table = ctx.data.table;
    if (table === "transactions" || table === "imports" || table === "subjects") refreshSoon();
  });
  // Back after a disconnect: what was missed is recovered; if it cannot be, reload.
  caseSub.on("subscribed", (ctx) => { if (ctx.wasRecovering && !ctx.recovered) refreshSoon(); });
  caseSub.subscribe();
}

async function showOperatorCounts() {
  const stats = await call("/realtime");
  const channels = Object.entries(stats.channels)
    .map(([name, c]) => `${name}: ${c.clients} (${c.users} users)`).join(" · ");
  $("operator-counts").textContent = `${stats.connections} connections${channels ? " — " + channels : ""}`;
  $("operator").hidden = false;
}

async function openCase(id) {
  const c = await call(`/cases/${id}`);
  currentCase = c.id;
  followCase(c.id);
  $("case-title").textContent = `${c.reference} — ${c.title}`;
  $("case-meta").textContent = `status ${c.status} · priority ${c.priority} · opened ${c.opened_on}`;
  $("subjects").replaceChildren(...c.subjects.map((s) => {
    const li = document.createElement("li");
    li.textContent = `${s.name} (${s.kind}, ${s.country || "?"}, risk ${s.risk_level})`;
    return li;
  }));
  $("import-status").textContent = "";
  $("import-rejects").replaceChildren();
  hideMapping();
  show("case");
  document.dispatchEvent(new CustomEvent("casebook:case", { detail: c })); // offline.js edits it
  await refreshCase();
}

async function refreshCase() {
  $("txn-rows").replaceChildren();
  txnCursor = null;
  await Promise.all([loadDashboard(), loadTransactions()]);
}

function money(cents, currency) {
  return cents == null ? "" : `${(cents / 100).toFixed(2)} ${currency}`;
}

async function loadDashboard() {
  const board = await call(`/cases/${currentCase}/dashboard`);
  $("dashboard-rows").replaceChildren(...board.categories.map((c) => {
    const tr = document.createElement("tr");
    cell(tr, c.category); cell(tr, c.direction); cell(tr, c.count, "num");
    cell(tr, money(c.amount_cents, c.currency), "num");
    cell(tr, money(c.largest_cents, c.currency), "num");
    cell(tr, c.first_posted_on); cell(tr, c.last_posted_on);
    return tr;
  }));
}

function importStatus(text) { $("import-status").textContent = text; }

const ROLES = ["booking_date", "value_date", "amount", "debit", "credit", "direction", "currency",
  "counterparty", "counterparty_account", "description", "reference", "balance", "category", "kind"];
let pending = null; // the file and preview waiting on the mapping page

function query(answers, extra) {
  const params = new URLSearchParams(extra);
  for (const [key, value] of Object.entries(answers)) params.append("map", `${key}=${value}`);
  const text = params.toString();
  return text ? `?${text}` : "";
}

// Preview first: a file its organization's profile reads without questions imports at once;
// any other goes to the mapping page, where the person confirms or corrects what was found.
async function importFile(event) {
  event.preventDefault();
  const form = event.target;
  const file = form.file.files[0];
  $("import-rejects").replaceChildren();
  importStatus(`reading ${file.name}…`);
  const body = new FormData();
  body.append("file", file);
  const response = await fetch(`${api}/cases/${currentCase}/imports/preview`, {
    method: "POST", body, headers: { Authorization: `Bearer ${token}` },
  });
  const preview = await response.json();
  if (!response.ok) { importFailed(preview.error); return; }
  if (preview.ready && preview.profile) {
    await upload(file, {}, {});
    return;
  }
  showMapping(file, preview);
}

function option(select, value, label, chosen) {
  const item = document.createElement("option");
  item.value = value; item.textContent = label; item.selected = chosen;
  select.appendChild(item);
}

function showMapping(file, preview) {
  pending = { file, preview };
  const form = $("mapping");
  const mapping = preview.mapping;
  const columns = mapping.header.map((label, i) => label.trim() || `column ${i + 1}`);
  $("mapping-file").textContent = file.name;
  $("mapping-source").textContent = `${preview.format}, ${preview.encoding}` +
    (preview.profile ? `, profile ${preview.profile.name}` : ", no saved profile matches");
  $("mapping-questions").replaceChildren(...preview.questions.map((q) => {
    const li = document.createElement("li"); li.textContent = q.text; return li;
  }));
  const notes = [
    ...preview.warnings,
    ...preview.preamble.map((line) => `before the table (not imported): ${line}`),
    ...preview.trailer.map((t) => `after the table, line ${t.line} (not imported): ${t.text}`),
  ];
  $("mapping-warnings").replaceChildren(...notes.map((w) => {
    const li = document.createElement("li"); li.textContent = w; return li;
  }));
  $("mapping-roles").replaceChildren(...ROLES.map((role) => {
    const tr = document.createElement("tr");
    cell(tr, role.replaceAll("_", " "));
    const select = document.createElement("select");
    select.name = `role:${role}`;
    select.setAttribute("aria-label", `${role.replaceAll("_", " ")} column`);
    option(select, "", "(none)", !(role in mapping.columns));
    for (const label of columns) option(select, label, label, mapping.columns[role] === label);
    const td = document.createElement("td"); td.appendChild(select); tr.appendChild(td);
    return tr;
  }));
  form.date_order.value = mapping.date_order || "";
  form.decimal.value = mapping.decimal || "";
  form.sign.value = mapping.sign;
  form.currency.value = mapping.currency || "";
  const shown = ["booking_date", "amount", "currency", "counterparty", "description"];
  const head = document.createElement("tr");
  for (const name of ["line", ...shown]) cell(head, name.replaceAll("_", " "));
  $("mapping-head").replaceChildren(head);
  $("mapping-rows").replaceChildren(...preview.rows.map((row) => {
    const tr = document.createElement("tr");
    cell(tr, row.line);
    if (row.errors) { cell(tr, row.errors.map((e) => `${e.column}: ${e.reason}`).join("; "), "error"); }
    else {
      for (const name of shown) {
        const value = row.values[name];
        cell(tr, name === "amount" ? (value / 100).toFixed(2) : value, name === "amount" ? "num" : "");
      }
    }
    return tr;
  }));
  $("import").hidden = true;
  form.hidden = false;
}

function hideMapping() {
  pending = null;
  $("mapping").hidden = true;
  $("import").hidden = false;
}

// What the person changed or answered, as map=key=value pairs.
function answersOf(form) {
  const mapping = pending.preview.mapping;
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

async function confirmMapping(event) {
  event.preventDefault();
  const form = event.target;
  const extra = form.profile.value.trim() ? { save_profile: form.profile.value.trim() } : {};
  const { file } = pending;
  const answers = answersOf(form);
  hideMapping();
  await upload(file, answers, extra);
}

// Upload, then wait for the import job's outcome: the server holds the request up to 30 s
// (Prefer: wait); a longer import is followed on GET /imports/{id} until it settles.
async function upload(file, answers, extra) {
  const form = $("import");
  const body = new FormData();
  body.append("file", file);
  if (form.skip_invalid.checked) extra = { ...extra, policy: "skip_invalid" };
  importStatus(`uploading ${file.name}…`);
  const response = await fetch(`${api}/cases/${currentCase}/imports${query(answers, extra)}`, {
    method: "POST", body, headers: { Authorization: `Bearer ${token}`, Prefer: "wait=30" },
  });
  let record = await response.json();
  if (!response.ok) { importFailed(record.error); return; }
  const progressSub = record.job_id && live ? live.newSubscription(`job:${record.job_id}`) : null;
  if (progressSub) {
    progressSub.on("publication", (ctx) => {
      const p = ctx.data;
      if (p.total) importStatus(`importing… ${Math.round((100 * p.current) / p.total)}%`);
    });
    progressSub.subscribe();
  }
  while (record.status === "queued" || record.status === "running") {
    const progress = record.job && record.job.progress;
    importStatus(progress && progress.total
      ? `importing… ${Math.round((100 * progress.current) / progress.total)}%`
      : `import ${record.status}…`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    record = await call(`/imports/${record.id}`);
  }
  if (progressSub) { progressSub.unsubscribe(); live.removeSubscription(progressSub); }
  if (record.status === "imported") {
    const rejected = record.rows_rejected ? `, ${record.rows_rejected} rejected` : "";
    importStatus(`imported ${record.rows_imported} transactions${rejected}`);
    form.reset();
    await refreshCase();
  } else {
    importStatus(`import ${record.status}: ${record.message || ""}`);
  }
}

function importFailed(error) {
  importStatus(error.message);
  const rejects = (error.details && error.details.rejects) || [];
  $("import-rejects").replaceChildren(...rejects.map((r) => {
    const li = document.createElement("li");
    li.textContent = `row ${r.row}${r.column ? `, ${r.column}` : ""}: ${r.reason}${r.value ? ` (${r.value})` : ""}`;
    return li;
  }));
}

async function loadTransactions() {
  const query = txnCursor ? `&cursor=${encodeURIComponent(txnCursor)}` : "";
  const page = await call(`/cases/${currentCase}/transactions?limit=50${query}`);
  for (const t of page.items) {
    const tr = document.createElement("tr");
    cell(tr, t.posted_on); cell(tr, `${t.amount} ${t.currency}`, "num"); cell(tr, t.direction);
    cell(tr, t.category); cell(tr, t.counterparty); cell(tr, t.flagged ? "yes" : "");
    $("txn-rows").appendChild(tr);
  }
  txnCursor = page.next_cursor;
  $("more-txns").hidden = !txnCursor;
}

async function start() {
  if (!token) { show("login"); return; }
  try {
    const me = await call("/auth/me");
    $("who").textContent = `${me.full_name} (${me.role})`;
    connectLive();
    if (me.role === "admin") showOperatorCounts().catch(() => {});
    show("cases");
    await loadCases(true);
  } catch (error) {
    logout();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    const response = await fetch(`${api}/auth/token`, {
      method: "POST", body: new URLSearchParams(new FormData(event.target)),
    });
    const body = await response.json();
    if (!response.ok) { $("login-error").textContent = body.error.message; return; }
    token = body.access_token;
    sessionStorage.setItem("casebook.token", token);
    sessionStorage.setItem("casebook.refresh", body.refresh_token);
    await start();
  });
  $("logout").addEventListener("click", logout);
  $("more-cases").addEventListener("click", () => loadCases(false));
  $("more-txns").addEventListener("click", loadTransactions);
  $("import").addEventListener("submit", (event) => {
    importFile(event).catch((error) => importStatus(error.message));
  });
  $("mapping").addEventListener("submit", (event) => {
    confirmMapping(event).catch((error) => importStatus(error.message));
  });
  $("mapping-cancel").addEventListener("click", hideMapping);
  $("back").addEventListener("click", () => show("cases"));
  start();
});
