// casebook's edits through lockstep.js (lockstep's browser module): a case's title, status
// and priority (the form under the case's header, pages/case.js), its subjects' notes
// (the Subjects tab, pages/case-subjects.js) and reviewers' decisions (pages/review.js) are
// queued in the IndexedDB outbox (one per
// user), shown at once (optimistic) and pushed to POST /sync/push when the network allows,
// in the background by lockstep's service worker too (which also keeps visited pages and
// their data for offline reloads). The case and its subjects follow their Electric shapes:
// an edit made in another tab appears without a reload. Edits the server refuses are rolled
// back and listed under "Edits the server refused" (the shell's #dead-letters).
//
// The module's URL is in the shell's <meta name="lockstep-module"> (content-hashed, served
// by lockstep under /lockstep/{hash}/): no inline script, the CSP is unchanged. Token
// refreshes are single-flight between api.js and the module (api.js's renew() goes through
// Lockstep.refreshed while the module runs; the module's refresh() is api.js's refresh).
import { call, refreshTokens, renewThrough, session } from "./api.js";
import { el, priorityBadge, statusBadge } from "./format.js";

const meta = document.querySelector('meta[name="lockstep-module"]');
const moduleUrl = meta ? meta.content : "";

let ls = null; // the Lockstep of the signed-in user
let starting = null;

function userOf(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub;
  } catch {
    return null;
  }
}

/** The signed-in user's Lockstep (started once per user), or null when signed out. */
export async function lockstep() {
  const user = session.token && userOf(session.token);
  if (!user || !moduleUrl) return null;
  if (ls && ls.scope === `user-${user}`) return ls;
  if (!starting) {
    starting = (async () => {
      if (ls) { ls.close(); ls = null; }
      const { Lockstep } = await import(moduleUrl);
      const started = await Lockstep.start({
        scope: `user-${user}`,
        token: () => session.token,
        refresh: refreshTokens,
      });
      started.on("change", () => { for (const fn of watchers) fn(); showDeadLetters(); });
      ls = started;
      renewThrough((stale) => started.refreshed(stale));
      showDeadLetters();
      return started;
    })().finally(() => { starting = null; });
  }
  return starting;
}

/** Sign-out: the module forgets the access token and the answers the service worker kept
 * (queued edits stay in the outbox for this user's next sign-in). */
export async function signOut() {
  renewThrough(null);
  const signedOut = ls || (starting && await starting.catch(() => null));
  ls = null;
  if (!signedOut) return;
  try { await signedOut.forget(); } finally { signedOut.close(); }
}

const watchers = new Set(); // redraws of what is on screen, after any outbox event

function watch(signal, fn) {
  watchers.add(fn);
  signal.addEventListener("abort", () => watchers.delete(fn));
}

function numbered(row) {
  return { ...row, id: Number(row.id), version: Number(row.version) };
}

function caseRow(c) {
  const { subjects: _subjects, assignee: _assignee, ...row } = c;
  const assignee = row.assignee_id == null || row.assignee_id === "" ? null : Number(row.assignee_id);
  return { ...numbered(row), priority: Number(row.priority), assignee_id: assignee };
}

// What an edit does to a row, for the optimistic view (the server's handlers do the same).
function applyEdit(row, mutation) {
  const answer = mutation.result && mutation.result.result;
  if (answer && answer.version <= row.version) return row; // the row has it already
  const { case_id: _case, subject_id: _subject, ...fields } = mutation.args;
  return { ...row, ...fields, version: row.version + 1 };
}

const waiting = (n, one, many) => (n ? `${n} ${n > 1 ? many : one} waiting to sync` : "");

/** The case's edit form (title, status, priority), drawn with the case as edited here; it
 * also redraws the page's #case-title and #case-meta. Stops following when ctx.signal aborts. */
export function caseEditor({ signal }, kase) {
  const key = `cases:${kase.id}`;
  let server = caseRow(kase);
  const status = el("p", { id: "case-sync", role: "status", class: "hint" }, "");
  const form = el("form", { id: "case-edit", class: "edit", "aria-label": "Edit case" },
    el("label", {}, "Title ", el("input", { name: "title", autocomplete: "off", maxlength: "200" })),
    el("label", {}, "Status ", el("select", { name: "status" },
      el("option", { value: "open" }, "open"), el("option", { value: "under_review" }, "under review"),
      el("option", { value: "closed" }, "closed"))),
    el("label", {}, "Priority ", el("select", { name: "priority" },
      [1, 2, 3, 4, 5].map((p) => el("option", { value: String(p) }, `P${p}`)))),
    el("label", {}, "Assignee ", el("select", { name: "assignee_id" }, el("option", { value: "" }, "nobody"),
      kase.assignee ? el("option", { value: String(kase.assignee.id) }, kase.assignee.full_name) : null)),
    el("button", { type: "submit" }, "Save"), status);
  const names = new Map(kase.assignee ? [[kase.assignee.id, kase.assignee.full_name]] : []);
  const fill = (row) => {
    form.title.value = row.title;
    form.status.value = row.status;
    form.priority.value = String(row.priority);
    form.assignee_id.value = row.assignee_id == null ? "" : String(row.assignee_id);
  };
  fill(server);
  // Anyone of the organization may be assigned: the directory every member reads.
  call("/people", { signal }).then((people) => {
    const chosen = form.assignee_id.value;
    form.assignee_id.replaceChildren(el("option", { value: "" }, "nobody"), ...people.items
      .filter((p) => p.is_active || String(p.id) === chosen)
      .map((p) => { names.set(p.id, p.full_name); return el("option", { value: String(p.id) }, `${p.full_name} (${p.role})`); }));
    form.assignee_id.value = chosen;
  }).catch(() => { /* the current assignee and "nobody" stay */ });

  const draw = async () => {
    const started = ls;
    if (!started || signal.aborted) return;
    const { row, pending } = await started.view(key, server, applyEdit);
    if (signal.aborted) return;
    const title = document.getElementById("case-title");
    if (title) title.textContent = `${row.reference} — ${row.title}`;
    const meta = document.getElementById("case-meta");
    if (meta) {
      meta.querySelector(".badge").replaceWith(statusBadge(row.status));
      meta.querySelector(".prio").replaceWith(priorityBadge(row.priority));
      const assignee = document.getElementById("case-assignee");
      if (assignee) assignee.textContent = row.assignee_id == null ? "nobody" : names.get(row.assignee_id) || `user #${row.assignee_id}`;
    }
    if (!form.contains(document.activeElement)) fill(row);
    status.textContent = waiting(pending.length, "edit", "edits") || "all edits saved";
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const started = await lockstep();
    if (!started || signal.aborted) return;
    const { row } = await started.view(key, server, applyEdit);
    const fields = {};
    if (form.title.value !== row.title) fields.title = form.title.value;
    if (form.status.value !== row.status) fields.status = form.status.value;
    if (Number(form.priority.value) !== row.priority) fields.priority = Number(form.priority.value);
    const assignee = form.assignee_id.value ? Number(form.assignee_id.value) : null;
    if (assignee !== (row.assignee_id ?? null)) fields.assignee_id = assignee;
    if (!Object.keys(fields).length) return;
    document.activeElement.blur();
    await started.mutate("case.update", { case_id: row.id, ...fields }, { base_version: row.version, key });
    await draw();
  });

  (async () => {
    const started = await lockstep();
    if (!started || signal.aborted) return;
    watch(signal, draw);
    await draw();
    // Each shape holds a connection: followed while the case page is open.
    const follow = started.shape({ table: "cases", where: "id = $1", params: [String(kase.id)] }, (rows) => {
      if (!rows.length) return;
      server = caseRow({ ...server, ...rows[0] });
      draw();
    });
    signal.addEventListener("abort", () => follow.stop());
  })();
  return form;
}

/** The subjects' notes, each a form edited through the outbox, followed live. */
export function subjectNotes({ signal }, kase) {
  const list = el("div", { id: "subject-notes" });
  let subjects = new Map((kase.subjects || []).map((row) => [Number(row.id), numbered(row)]));

  const draw = async () => {
    const started = ls;
    if (!started || signal.aborted) return;
    const items = [];
    for (const server of [...subjects.values()].sort((a, b) => a.id - b.id)) {
      items.push(await started.view(`subjects:${server.id}`, server, applyEdit));
    }
    if (signal.aborted) return;
    const focused = list.contains(document.activeElement) ? document.activeElement : null;
    for (const { row, pending } of items) {
      let form = list.querySelector(`form[data-id="${row.id}"]`);
      if (!form) {
        form = el("form", { "data-id": row.id, class: "notes", "aria-label": `Notes on ${row.name}` },
          el("label", {}, `Notes on ${row.name} `, el("textarea", { name: "notes", rows: "2", maxlength: "4000" })),
          el("button", { type: "submit" }, "Save notes"), " ", el("span", { class: "hint" }));
        const id = row.id;
        form.addEventListener("submit", (event) => { save(event, id); });
        list.append(form);
      }
      if (form.notes !== focused) form.notes.value = row.notes || "";
      form.querySelector("span").textContent = waiting(pending.length, "edit", "edits");
    }
  };

  const save = async (event, subjectId) => {
    event.preventDefault();
    const started = await lockstep();
    const server = subjects.get(subjectId);
    if (!started || !server) return;
    const key = `subjects:${subjectId}`;
    const { row } = await started.view(key, server, applyEdit);
    const notes = event.target.notes.value;
    if (notes === (row.notes || "")) return;
    document.activeElement.blur();
    await started.mutate("subject.notes", { subject_id: subjectId, notes }, { base_version: row.version, key });
    await draw();
  };

  (async () => {
    const started = await lockstep();
    if (!started || signal.aborted) return;
    watch(signal, draw);
    await draw();
    const follow = started.shape({ table: "subjects", where: "case_id = $1", params: [String(kase.id)] }, (rows) => {
      subjects = new Map(rows.map((row) => [Number(row.id), numbered(row)]));
      draw();
    });
    signal.addEventListener("abort", () => follow.stop());
  })();
  return list;
}

/** An adjudication decision, queued in the outbox like every edit (pages/review.js): a
 * reviewer decides offline too. The server applies its rules when the decision arrives (a
 * lease of the reviewer's, still running; four-eyes; once); a refusal is a dead letter.
 * False when the module is not available (the page then decides online). */
export async function decide(item, outcome, reason) {
  const started = await lockstep();
  if (!started) return false;
  await started.mutate("adjudication.decide", { item_id: item.id, outcome, reason },
    { base_version: item.version, key: `adjudication_items:${item.id}` });
  return true;
}

/** The decisions on ``items`` still waiting in the outbox: item id → {outcome, reason}. */
export async function pendingDecisions(items) {
  const waiting = new Map();
  const started = ls;
  if (!started) return waiting;
  for (const item of items) {
    const { pending } = await started.view(`adjudication_items:${item.id}`, item, (row) => row);
    if (pending.length) waiting.set(item.id, pending[pending.length - 1].args);
  }
  return waiting;
}

/** Call ``fn`` after any outbox event (queued, sent, refused) until ``signal`` aborts. */
export function onOutbox(signal, fn) {
  watch(signal, fn);
}

async function showDeadLetters() {
  const started = ls;
  const section = document.getElementById("dead-letters");
  if (!started || !section) return;
  const letters = await started.deadLetters();
  section.hidden = letters.length === 0;
  document.getElementById("dead-letter-list").replaceChildren(...letters.map((letter) => {
    const error = letter.error || {};
    const { case_id: caseId, subject_id: subjectId, item_id: itemId, ...fields } = letter.args;
    const what = Object.entries(fields).map(([k, v]) => `${k} "${v}"`).join(", ");
    const of = caseId != null ? `case ${caseId}` : subjectId != null ? `subject ${subjectId}` : `review item ${itemId}`;
    return el("li", {}, `${letter.name} of ${of}: ${what} — ${letter.status}: ${error.code || ""} ${error.message || ""} `,
      el("button", { type: "button", class: "quiet", onclick: () => started.dismiss(letter.dead_id) }, "Dismiss"));
  }));
}
