// Formatting in one place (amounts with thousands separators and their ISO currency code,
// dates in one format) and a small DOM builder: text always goes in as text, never HTML.

const numbers = new Map();
const DATE = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
const DATETIME = new Intl.DateTimeFormat("en-GB", {
  day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
});
const MONTH = new Intl.DateTimeFormat("en-GB", { month: "short", year: "numeric", timeZone: "UTC" });

/** 123456 cents, "EUR" → "EUR 1,234.56" (the code, not a symbol: $ is many currencies);
 * with no currency known yet, "1,234.56". */
export function money(cents, currency) {
  if (cents == null) return "";
  const code = currency || "";
  if (!numbers.has(code)) {
    numbers.set(code, new Intl.NumberFormat("en-US", code
      ? { style: "currency", currency: code, currencyDisplay: "code" }
      : { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
  }
  return numbers.get(code).format(cents / 100);
}

export const count = (n) => (n == null ? "" : new Intl.NumberFormat("en-US").format(n));
export const percent = (x) => (x == null || Number.isNaN(x) ? "–" : `${(100 * x).toFixed(1)} %`);

/** "2026-03-01" or an ISO timestamp → "1 Mar 2026" (timestamps with their local time). */
export function date(value) {
  if (!value) return "";
  if (value.length === 10) return DATE.format(new Date(`${value}T00:00:00Z`));
  return DATETIME.format(new Date(value));
}

/** "2026-03" → "Mar 2026". */
export const month = (value) => (value ? MONTH.format(new Date(`${value}-01T00:00:00Z`)) : "");

export const label = (name) => String(name).replaceAll("_", " ");

/** A copy of the shell's <template id="…">'s element. */
export const use = (id) => document.getElementById(id).content.firstElementChild.cloneNode(true);

/** A filter form: its fields set from the address's query; submitting navigates to
 * path?(the non-empty fields). */
export function filters(form, query, path, navigate) {
  for (const [key, value] of query) if (form.elements[key]) form.elements[key].value = value;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (String(value).trim()) params.set(key, String(value).trim());
    navigate(path + (params.toString() ? `?${params}` : ""));
  });
  return form;
}

/** el(tag, {attribute: value, onevent: fn}, ...children) */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** A table: columns [{label, value(row), num?}], rows; an empty state when there are none. */
export function table(columns, rows, { empty = "Nothing here yet.", id, caption } = {}) {
  const body = el("tbody", { id });
  for (const row of rows) body.append(tableRow(columns, row));
  const wrapper = el("div", { class: "table-wrap" }, el("table", {},
    caption ? el("caption", { class: "sr-only" }, caption) : null,
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null, scope: "col" }, c.label)))),
    body));
  if (!rows.length) wrapper.append(el("p", { class: "empty" }, empty));
  return wrapper;
}

export function tableRow(columns, row) {
  return el("tr", {}, columns.map((c) => el("td", { class: c.num ? "num" : null, "data-label": c.label }, c.value(row))));
}

export const statusBadge = (status) => el("span", { class: `badge ${status}` }, label(status));
export const priorityBadge = (p) => el("span", { class: `prio p${p}`, title: `priority ${p} (1 highest)` }, `P${p}`);

/** A figure on a card: what it is, the value, a note. */
export const card = (title, value, note) => el("div", { class: "card stat" },
  el("span", { class: "stat-label" }, title), el("strong", {}, value), el("small", {}, note));

/** "More …" under a table: fetch(cursor) → {items, next_cursor}; appends rows until done. */
export function more(text, list, columns, cursor, fetch) {
  const button = el("button", { type: "button", class: "secondary", hidden: !cursor }, text);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const next = await fetch(cursor);
      for (const row of next.items) list.querySelector("tbody").append(tableRow(columns, row));
      cursor = next.next_cursor;
      button.hidden = !cursor;
    } catch (error) {
      button.after(el("p", { class: "error", role: "alert" }, error.message));
    } finally { button.disabled = false; }
  });
  return button;
}
