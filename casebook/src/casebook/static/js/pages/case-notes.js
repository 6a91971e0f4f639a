// A case's notes and evidence files. Everyone reads both; analysts and admins add notes and
// upload files (with a progress bar), a note's author edits it (If-Match: a note changed
// meanwhile is refused, not overwritten), its author or an admin deletes it. Each file shows
// its size, SHA-256 (short, copyable), uploader and date; it downloads, verifies (the server
// hashes it again) and unfolds its chain of custody. Both lists redraw when rows of the case
// commit (case:{id}).
import { API, ApiError, call, download, errorBox, renew, send, session } from "../api.js";
import { count, date, el, label, more, table } from "../format.js";

const NOTE_PAGE = 20;

export async function render({ root, can, me, signal, redraw }, kase) {
  const writer = can("analyst", "admin");
  root.append(el("h2", { id: "tab-title" }, "Notes & evidence"));

  // -- notes ------------------------------------------------------------------------------------
  const notes = el("div", { id: "notes" });
  const noteStatus = el("p", { id: "note-status", role: "status" });
  root.append(el("h3", {}, "Notes"));
  if (writer) root.append(noteForm(kase, noteStatus));
  root.append(noteStatus, notes);

  const noteItem = (n) => {
    const body = el("p", { class: "note-body" }, n.body);
    const actions = el("p", { class: "actions" });
    if (n.author_id === me.id) actions.append(el("button", { type: "button", class: "link", onclick: () => edit(n, body) }, "Edit"));
    if (writer && (n.author_id === me.id || me.role === "admin")) {
      actions.append(el("button", { type: "button", class: "link", onclick: () => remove(n) }, "Delete"));
    }
    return el("article", { class: "card note", "data-note": n.id },
      el("p", { class: "meta" }, `${n.author ? n.author.full_name : "a former user"} · ${date(n.created_at)}`,
        n.version > 1 ? ` · edited ${date(n.updated_at)}` : ""),
      body, actions.childNodes.length ? actions : null);
  };
  const edit = (n, body) => {
    const area = el("textarea", { name: "body", rows: 4, maxlength: 10000, required: true, "aria-label": "Note" });
    area.value = n.body;
    const form = el("form", { class: "note-edit" }, area,
      el("p", { class: "actions" }, el("button", { type: "submit" }, "Save"),
        el("button", { type: "button", class: "secondary", onclick: () => form.replaceWith(body) }, "Cancel")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        // The note as it was shown: a change by anyone since is a 412, not a lost update.
        const current = await send(`/notes/${n.id}`);
        const fresh = await current.json();
        if (fresh.version !== n.version) throw new Error("This note was changed meanwhile; reload it before editing.");
        await call(`/notes/${n.id}`, { method: "PATCH", headers: { "Content-Type": "application/json", "If-Match": current.headers.get("ETag") }, body: JSON.stringify({ body: area.value }) });
        await drawNotes();
      } catch (error) { noteStatus.replaceChildren(errorBox(error, "Could not save the note")); }
    });
    body.replaceWith(form);
    area.focus();
  };
  const remove = async (n) => {
    if (!window.confirm("Delete this note?")) return;
    try {
      await call(`/notes/${n.id}`, { method: "DELETE" });
      await drawNotes();
    } catch (error) { noteStatus.replaceChildren(errorBox(error, "Could not delete the note")); }
  };
  const drawNotes = async () => {
    let first;
    try {
      first = await call(`/cases/${kase.id}/notes?limit=${NOTE_PAGE}`, { signal });
    } catch (error) {
      if (!signal.aborted) notes.replaceChildren(errorBox(error, "Could not load the notes"));
      return;
    }
    const list = el("div", { id: "note-list" }, first.items.map(noteItem));
    let cursor = first.next_cursor;
    const older = el("button", { type: "button", class: "secondary", hidden: !cursor }, "Older notes");
    older.addEventListener("click", async () => {
      const next = await call(`/cases/${kase.id}/notes?limit=${NOTE_PAGE}&cursor=${cursor}`, { signal });
      list.append(...next.items.map(noteItem));
      cursor = next.next_cursor;
      older.hidden = !cursor;
    });
    notes.replaceChildren(first.items.length ? list : el("p", { class: "empty" }, "No note on this case yet."), older);
  };

  // -- evidence ---------------------------------------------------------------------------------
  const files = el("div", { id: "evidence" });
  const fileStatus = el("p", { id: "evidence-status", role: "status" });
  root.append(el("h3", {}, "Evidence"));
  if (writer) root.append(uploadForm(kase, fileStatus));
  root.append(fileStatus, files);
  const opened = new Set(); // evidence ids whose custody is unfolded

  const columns = [
    { label: "File", value: (e) => el("span", {}, el("strong", {}, e.filename),
      e.description ? el("small", { class: "hint" }, ` — ${e.description}`) : "") },
    { label: "Size", num: true, value: (e) => `${count(e.size_bytes)} B` },
    { label: "SHA-256", value: (e) => el("span", { class: "sha" },
      el("code", { title: e.sha256, "data-sha": e.sha256 }, `${e.sha256.slice(0, 12)}…`), " ",
      el("button", { type: "button", class: "link", "aria-label": `Copy the SHA-256 of ${e.filename}`,
        onclick: (event) => copy(e.sha256, event.target) }, "copy")) },
    { label: "Uploaded", value: (e) => `${e.uploaded_by ? e.uploaded_by.full_name : "a former user"} · ${date(e.created_at)}` },
    { label: "Check", value: (e) => (e.deleted_at
      ? el("span", { class: "badge closed" }, `deleted ${date(e.deleted_at)}`)
      : e.verify_status ? el("span", { class: `badge ${e.verify_status === "ok" ? "ready" : "failed"}` }, `${label(e.verify_status)} ${date(e.verified_at)}`)
        : el("span", { class: "hint" }, "not verified")) },
    { label: "Actions", value: (e) => el("span", { class: "actions" },
      e.content_url ? el("button", { type: "button", class: "link", "data-download": e.id,
        onclick: () => fetchFile(e).catch((error) => fileStatus.replaceChildren(errorBox(error, "Could not download"))) }, "Download") : null,
      e.content_url ? el("button", { type: "button", class: "link", "data-verify": e.id, onclick: () => verify(e) }, "Verify") : null,
      el("button", { type: "button", class: "link", "data-custody": e.id, "aria-expanded": String(opened.has(e.id)),
        onclick: () => toggle(e) }, "Custody")) },
  ];
  const fetchFile = (e) => download(e.content_url, e.filename);
  const verify = async (e) => {
    try {
      const checked = await call(`/evidence/${e.id}/verify`, { method: "POST" });
      fileStatus.textContent = `${checked.filename}: ${checked.verify_status === "ok" ? "the stored file matches its SHA-256" : `${checked.verify_status.toUpperCase()} — the stored file does not match`}`;
      await drawFiles();
    } catch (error) { fileStatus.replaceChildren(errorBox(error, "Could not verify")); }
  };
  const toggle = async (e) => {
    if (opened.has(e.id)) opened.delete(e.id); else opened.add(e.id);
    await drawFiles();
  };
  const custody = async (e) => {
    const page = await call(`/evidence/${e.id}/custody?limit=200`, { signal });
    return el("tr", { class: "custody", "data-custody-of": e.id }, el("td", { colspan: columns.length },
      el("ol", { class: "custody-list", "aria-label": `Chain of custody of ${e.filename}` }, page.items.map((c) =>
        el("li", {}, el("strong", {}, label(c.action)), c.outcome ? ` ${c.outcome.toUpperCase()}` : "",
          ` · ${c.user ? c.user.full_name : c.actor} · ${date(c.at)}`,
          c.sha256 ? el("code", { title: c.sha256 }, ` ${c.sha256.slice(0, 12)}…`) : " · no file")))));
  };
  const drawFiles = async () => {
    let page;
    try {
      page = await call(`/cases/${kase.id}/evidence?limit=50`, { signal });
    } catch (error) {
      if (!signal.aborted) files.replaceChildren(errorBox(error, "Could not load the evidence"));
      return;
    }
    const list = table(columns, page.items, { id: "evidence-rows", caption: "Evidence", empty: "No evidence attached to this case yet." });
    for (const e of page.items) {
      if (!opened.has(e.id)) continue;
      const row = list.querySelector(`[data-custody="${e.id}"]`).closest("tr");
      try { row.after(await custody(e)); } catch (error) { row.after(el("tr", {}, el("td", { colspan: columns.length }, errorBox(error)))); }
    }
    files.replaceChildren(list, more("More files", list, columns, page.next_cursor,
      (cursor) => call(`/cases/${kase.id}/evidence?limit=50&cursor=${cursor}`, { signal })));
  };

  root.addEventListener("evidence:changed", () => drawFiles());
  root.addEventListener("notes:changed", () => drawNotes());
  await Promise.all([redraw(["notes"], drawNotes), redraw(["evidence", "evidence_custody"], drawFiles)]);
}

function noteForm(kase, status) {
  const area = el("textarea", { id: "note-body", name: "body", rows: 3, maxlength: 10000, required: true });
  const form = el("form", { id: "note-form", class: "card" },
    el("label", { for: "note-body" }, "New note"), area,
    el("p", { class: "actions" }, el("button", { type: "submit" }, "Add note")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await call(`/cases/${kase.id}/notes`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ body: area.value }) });
      area.value = "";
      status.textContent = "Note added.";
      form.dispatchEvent(new CustomEvent("notes:changed", { bubbles: true }));
    } catch (error) {
      status.replaceChildren(errorBox(error, "Could not add the note"));
    } finally { button.disabled = false; }
  });
  return form;
}

function uploadForm(kase, status) {
  const input = el("input", { id: "evidence-file", name: "file", type: "file", required: true });
  const description = el("input", { id: "evidence-description", name: "description", maxlength: 500 });
  const bar = el("progress", { id: "evidence-progress", max: 100, value: 0, hidden: true });
  const form = el("form", { id: "evidence-form", class: "card" },
    el("label", { for: "evidence-file" }, "File"), input,
    el("label", { for: "evidence-description" }, "Description (optional)"), description,
    el("p", { class: "hint" }, "Hashed (SHA-256) by the server as it arrives; every download and check is recorded."),
    el("p", { class: "actions" }, el("button", { type: "submit" }, "Upload evidence"), bar));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    bar.hidden = false;
    try {
      const body = new FormData();
      body.append("file", input.files[0]);
      if (description.value) body.append("description", description.value);
      const item = await upload(`${API}/cases/${kase.id}/evidence`, body, (done) => { bar.value = done; });
      status.textContent = `Uploaded ${item.filename} (SHA-256 ${item.sha256.slice(0, 12)}…).`;
      form.reset();
      form.dispatchEvent(new CustomEvent("evidence:changed", { bubbles: true }));
    } catch (error) {
      status.replaceChildren(errorBox(error, "Could not upload the file"));
    } finally { button.disabled = false; bar.hidden = true; bar.value = 0; }
  });
  return form;
}

/** POST a form with upload progress (fetch has none): XMLHttpRequest, renewing the token
 * once on a 401 like api.send. */
function upload(url, body, progress, retried = false) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    if (session.token) xhr.setRequestHeader("Authorization", `Bearer ${session.token}`);
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) progress(Math.round((100 * e.loaded) / e.total)); });
    xhr.addEventListener("error", () => reject(new Error("the upload failed (network)")));
    xhr.addEventListener("load", async () => {
      if (xhr.status === 401 && !retried && session.refreshToken) {
        try { await renew(); resolve(await upload(url, body, progress, true)); } catch (error) { reject(error); }
        return;
      }
      let parsed = null;
      try { parsed = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(parsed);
      else reject(new ApiError(xhr.status, (parsed && parsed.error) || { message: xhr.statusText }));
    });
    xhr.send(body);
  });
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "copied";
  } catch {
    button.textContent = "select it: " + text; // clipboard refused (not a secure context)
  }
}
