// casebook's small web UI: log in, page through cases, open one (its dashboard, its ledger)
// and import a CSV statement into it.
"use strict";

const api = "/api/v1";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("casebook.token");
let casesCursor = null;
let txnCursor = null;
let currentCase = null;

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

async function openCase(id) {
  const c = await call(`/cases/${id}`);
  currentCase = c.id;
  $("case-title").textContent = `${c.reference} — ${c.title}`;
  $("case-meta").textContent = `status ${c.status} · priority ${c.priority} · opened ${c.opened_on}`;
  $("subjects").replaceChildren(...c.subjects.map((s) => {
    const li = document.createElement("li");
    li.textContent = `${s.name} (${s.kind}, ${s.country || "?"}, risk ${s.risk_level})`;
    return li;
  }));
  $("import-status").textContent = "";
  $("import-rejects").replaceChildren();
  show("case");
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

// Upload, then wait for the import job's outcome: the server holds the request up to 30 s
// (Prefer: wait); a longer import is followed on GET /imports/{id} until it settles.
async function importFile(event) {
  event.preventDefault();
  const form = event.target;
  const body = new FormData();
  body.append("file", form.file.files[0]);
  const policy = form.skip_invalid.checked ? "?policy=skip_invalid" : "";
  $("import-rejects").replaceChildren();
  importStatus(`uploading ${form.file.files[0].name}…`);
  const response = await fetch(`${api}/cases/${currentCase}/imports${policy}`, {
    method: "POST", body, headers: { Authorization: `Bearer ${token}`, Prefer: "wait=30" },
  });
  let record = await response.json();
  if (!response.ok) { importFailed(record.error); return; }
  while (record.status === "queued" || record.status === "running") {
    const progress = record.job && record.job.progress;
    importStatus(progress && progress.total
      ? `importing… ${Math.round((100 * progress.current) / progress.total)}%`
      : `import ${record.status}…`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    record = await call(`/imports/${record.id}`);
  }
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
    await start();
  });
  $("logout").addEventListener("click", logout);
  $("more-cases").addEventListener("click", () => loadCases(false));
  $("more-txns").addEventListener("click", loadTransactions);
  $("import").addEventListener("submit", (event) => {
    importFile(event).catch((error) => importStatus(error.message));
  });
  $("back").addEventListener("click", () => show("cases"));
  start();
});
