// casebook's edits through lockstep.js: a case's title, status and priority and its
// subjects' notes are edited on the case page, queued in the IndexedDB outbox (one per user), shown at once (optimistic)
// and pushed to POST /sync/push when the network allows, in the background by lockstep's
// service worker too. The case follows the "cases" shape (Electric, live): an edit made in
// another tab appears without a reload. Edits the server refuses are rolled back and listed
// under "Edits the server refused".
//
// app.js tells this file which case is open ("casebook:case" with the case) and hears new
// access tokens ("casebook:token"); everything else is here.
const api = "/api/v1";
const $ = (id) => document.getElementById(id);
const moduleUrl = document.querySelector('meta[name="lockstep-module"]').content;

let ls = null; // the Lockstep of the signed-in user
let starting = null;
let current = null; // {key, row} the open case, as the server has it
let follow = null;
let subjects = new Map(); // subject id → its row, as the server has it
let followSubjects = null;

function userOf(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub;
  } catch (error) {
    return null;
  }
}

// The refresh token is used up by its refresh: lockstep runs one refresh at a time, and
// app.js's realtime client asks through here too (window.casebookOffline.refresh).
async function refreshToken() {
  const response = await fetch(`${api}/auth/refresh`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: sessionStorage.getItem("casebook.refresh") }),
    cache: "no-store",
  });
  if (!response.ok) throw new Error("please log in again");
  const body = await response.json();
  sessionStorage.setItem("casebook.token", body.access_token);
  sessionStorage.setItem("casebook.refresh", body.refresh_token);
  document.dispatchEvent(new CustomEvent("casebook:token", { detail: body.access_token }));
  return body.access_token;
}

async function lockstep() {
  const token = sessionStorage.getItem("casebook.token");
  const user = token && userOf(token);
  if (!user) return null;
  if (ls && ls.scope === `user-${user}`) return ls;
  if (!starting) {
    starting = (async () => {
      if (ls) { ls.close(); ls = null; }
      const { Lockstep } = await import(moduleUrl);
      const started = await Lockstep.start({
        scope: `user-${user}`,
        token: () => sessionStorage.getItem("casebook.token"),
        refresh: refreshToken,
      });
      started.on("change", () => { render(); renderNotes(); showDeadLetters(); });
      ls = started;
      showDeadLetters();
      return started;
    })().finally(() => { starting = null; });
  }
  return starting;
}

window.casebookOffline = {
  refresh: async () => {
    const started = await lockstep();
    return started ? started.refreshed(sessionStorage.getItem("casebook.token")) : refreshToken();
  },
};

// What an edit does to the case, for the optimistic view (the server's handler does the same).
function applyEdit(row, mutation) {
  const answer = mutation.result && mutation.result.result;
  if (answer && answer.version <= row.version) return row; // the row has it already
  const { case_id: _id, ...fields } = mutation.args;
  return { ...row, ...fields, version: row.version + 1 };
}

async function render() {
  if (!current || !ls) return;
  const { key, row: server } = current;
  const { row, pending } = await ls.view(key, server, applyEdit);
  if (!current || current.key !== key) return;
  $("case-title").textContent = `${row.reference} — ${row.title}`;
  $("case-meta").textContent = `status ${row.status} · priority ${row.priority} · opened ${row.opened_on}`;
  const form = $("case-edit");
  if (!form.contains(document.activeElement)) {
    form.title.value = row.title;
    form.status.value = row.status;
    form.priority.value = String(row.priority);
  }
  form.dataset.version = String(row.version);
  $("case-sync").textContent = pending.length
    ? `${pending.length} edit${pending.length > 1 ? "s" : ""} waiting to sync`
    : "all edits saved";
}

function applyNotes(row, mutation) {
  const answer = mutation.result && mutation.result.result;
  if (answer && answer.version <= row.version) return row;
  return { ...row, notes: mutation.args.notes, version: row.version + 1 };
}

async function renderNotes() {
  if (!current || !ls) return;
  const caseKey = current.key;
  const items = [];
  for (const server of [...subjects.values()].sort((a, b) => a.id - b.id)) {
    const { row, pending } = await ls.view(`subjects:${server.id}`, server, applyNotes);
    items.push({ row, pending });
  }
  if (!current || current.key !== caseKey) return;
  const list = $("subject-notes");
  const focused = list.contains(document.activeElement) ? document.activeElement : null;
  for (const { row, pending } of items) {
    let form = list.querySelector(`form[data-id="${row.id}"]`);
    if (!form) {
      form = document.createElement("form");
      form.dataset.id = String(row.id);
      form.setAttribute("aria-label", `Notes on ${row.name}`);
      const label = document.createElement("label");
      label.textContent = `Notes on ${row.name} `;
      const text = document.createElement("textarea");
      text.name = "notes";
      label.appendChild(text);
      const button = document.createElement("button");
      button.type = "submit";
      button.textContent = "Save notes";
      const status = document.createElement("span");
      status.className = "hint";
      form.append(label, button, status);
      form.addEventListener("submit", (event) => { saveNotes(event, row.id); });
      list.appendChild(form);
    }
    if (form.notes !== focused) form.notes.value = row.notes || "";
    form.querySelector("span").textContent = pending.length ? `${pending.length} waiting to sync` : "";
  }
}

async function saveNotes(event, subjectId) {
  event.preventDefault();
  const server = subjects.get(subjectId);
  if (!ls || !server) return;
  const key = `subjects:${subjectId}`;
  const { row } = await ls.view(key, server, applyNotes);
  const notes = event.target.notes.value;
  if (notes === (row.notes || "")) return;
  document.activeElement.blur();
  await ls.mutate("subject.notes", { subject_id: subjectId, notes }, { base_version: row.version, key });
  await renderNotes();
}

async function showDeadLetters() {
  if (!ls) return;
  const letters = await ls.deadLetters();
  $("dead-letters").hidden = letters.length === 0;
  $("dead-letter-list").replaceChildren(...letters.map((letter) => {
    const li = document.createElement("li");
    const error = letter.error || {};
    const { case_id: caseId, subject_id: subjectId, ...fields } = letter.args;
    const what = Object.entries(fields).map(([k, v]) => `${k} "${v}"`).join(", ");
    const of = caseId != null ? `case ${caseId}` : `subject ${subjectId}`;
    li.textContent = `${letter.name} of ${of}: ${what} — ${letter.status}: ${error.code || ""} ${error.message || ""} `;
    const dismiss = document.createElement("button");
    dismiss.textContent = "Dismiss";
    dismiss.addEventListener("click", () => ls.dismiss(letter.dead_id));
    li.appendChild(dismiss);
    return li;
  }));
}

function serverRow(c) {
  const { subjects: _subjects, assignee: _assignee, ...row } = c;
  return { ...row, id: Number(row.id), priority: Number(row.priority), version: Number(row.version) };
}

async function openCase(c) {
  const started = await lockstep();
  if (!started) return;
  if (follow) { follow.stop(); follow = null; }
  if (followSubjects) { followSubjects.stop(); followSubjects = null; }
  current = { key: `cases:${c.id}`, row: serverRow(c) };
  subjects = new Map((c.subjects || []).map((row) => [Number(row.id), numbered(row)]));
  $("subject-notes").replaceChildren();
  await render();
  await renderNotes();
  follow = started.shape({ table: "cases", where: "id = $1", params: [String(c.id)] }, (rows) => {
    if (!current || !rows.length || current.key !== `cases:${rows[0].id}`) return;
    current.row = serverRow({ ...current.row, ...rows[0] });
    render();
  });
  const caseKey = current.key;
  followSubjects = started.shape(
    { table: "subjects", where: "case_id = $1", params: [String(c.id)] },
    (rows) => {
      if (!current || current.key !== caseKey) return;
      subjects = new Map(rows.map((row) => [Number(row.id), numbered(row)]));
      renderNotes();
    },
  );
}

function numbered(row) {
  return { ...row, id: Number(row.id), version: Number(row.version) };
}

async function save(event) {
  event.preventDefault();
  const started = await lockstep();
  if (!started || !current) return;
  const form = event.target;
  const { key, row: server } = current;
  const { row } = await started.view(key, server, applyEdit);
  const fields = {};
  if (form.title.value !== row.title) fields.title = form.title.value;
  if (form.status.value !== row.status) fields.status = form.status.value;
  if (Number(form.priority.value) !== row.priority) fields.priority = Number(form.priority.value);
  if (!Object.keys(fields).length) return;
  document.activeElement.blur();
  await started.mutate("case.update", { case_id: row.id, ...fields }, { base_version: row.version, key });
  await render();
}

document.addEventListener("casebook:case", (event) => { openCase(event.detail); });
$("case-edit").addEventListener("submit", (event) => { save(event); });
function stopFollowing() {
  if (follow) { follow.stop(); follow = null; }
  if (followSubjects) { followSubjects.stop(); followSubjects = null; }
  current = null;
}

$("back").addEventListener("click", stopFollowing); // each shape holds a connection
$("logout").addEventListener("click", () => {
  stopFollowing();
  if (ls) {
    const signedOut = ls;
    ls = null;
    signedOut.forget().finally(() => signedOut.close());
  }
});
lockstep();
