// Hand-drawn SVG charts (no library): monthly credits and debits as paired columns, and
// categories as paired horizontal bars. Every mark is a link when the chart drills down
// (keyboard-focusable) and carries its exact figures in a <title>; the pages show the same
// numbers in a table too. Drawn at the width they are shown (width: the container's), so the
// text keeps its size on a phone.
import { el, money, month as monthName } from "./format.js";

const NS = "http://www.w3.org/2000/svg";
const COMPACT = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) if (value != null) node.setAttribute(key, String(value));
  for (const child of children.flat()) if (child != null) node.append(child);
  return node;
}

const title = (text) => svg("title", {}, text);

/** Keep the currency with the most activity: a chart in one unit. */
export function mainCurrency(rows) {
  const volume = new Map();
  for (const r of rows) volume.set(r.currency, (volume.get(r.currency) || 0) + r.amount_cents);
  return [...volume.entries()].sort((a, b) => b[1] - a[1]).map(([c]) => c)[0] || "EUR";
}

/** Category rows of one currency → [{category, credit, debit}], largest first. */
export function byCategory(items, currency) {
  const rows = new Map();
  for (const item of items.filter((i) => i.currency === currency)) {
    const row = rows.get(item.category) || { category: item.category, credit: 0, debit: 0 };
    row[item.direction] += item.amount_cents;
    rows.set(item.category, row);
  }
  return [...rows.values()].sort((a, b) => (b.credit + b.debit) - (a.credit + a.debit));
}

/** months: [{month, credit, debit}] in cents, oldest first; href(month): each month's link. */
export function monthlyChart(months, currency, { href, selected, width }) {
  const W = Math.max(300, Math.round(width || 720)), H = 220, left = 56, bottom = 28, top = 10;
  const plotW = W - left - 8, plotH = H - top - bottom;
  const max = Math.max(1, ...months.flatMap((m) => [m.credit, m.debit]));
  const step = plotW / Math.max(1, months.length);
  const bar = Math.max(2, Math.min(14, step / 2 - 2));
  const y = (v) => top + plotH - (plotH * v) / max;
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => svg("g", { class: "grid" },
    svg("line", { x1: left, x2: W - 8, y1: y(max * f), y2: y(max * f) }),
    svg("text", { x: left - 6, y: y(max * f) + 4, "text-anchor": "end" }, COMPACT.format((max * f) / 100))));
  const groups = months.map((m, i) => {
    const x = left + i * step + step / 2;
    const text = `${monthName(m.month)}: credits ${money(m.credit, currency)}, debits ${money(m.debit, currency)}`;
    const marks = [
      svg("rect", { class: "credit", x: x - bar - 1, y: y(m.credit), width: bar, height: Math.max(0, top + plotH - y(m.credit)) }),
      svg("rect", { class: "debit", x: x + 1, y: y(m.debit), width: bar, height: Math.max(0, top + plotH - y(m.debit)) }),
      svg("rect", { class: "hit", x: x - step / 2, y: top, width: step, height: plotH }),
      (i % Math.ceil(months.length / Math.max(2, Math.floor(plotW / 56))) === 0) ? svg("text", { x, y: H - 10, "text-anchor": "middle" }, monthName(m.month).replace(" 20", " ’")) : null,
    ];
    return svg("a", { href: href(m.month), class: m.month === selected ? "selected" : null, "aria-label": text }, title(text), marks);
  });
  return svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "group", "aria-label": `Monthly credits and debits in ${currency}` },
    grid, groups);
}

/** rows: [{category, credit, debit}] in cents; href(category) makes each row a link. */
export function categoryChart(rows, currency, { href, width }) {
  const W = Math.max(300, Math.round(width || 720)), rowH = 30, left = Math.min(150, W / 4), right = 56;
  const H = rows.length * rowH + 6;
  const max = Math.max(1, ...rows.flatMap((r) => [r.credit, r.debit]));
  const x = (v) => ((W - left - right) * v) / max;
  const marks = rows.map((r, i) => {
    const yy = 3 + i * rowH;
    const text = `${r.category}: credits ${money(r.credit, currency)}, debits ${money(r.debit, currency)}`;
    const parts = [
      svg("text", { x: left - 8, y: yy + 18, "text-anchor": "end", class: "name" }, r.category),
      svg("rect", { class: "credit", x: left, y: yy + 3, width: Math.max(1, x(r.credit)), height: 11 }),
      svg("rect", { class: "debit", x: left, y: yy + 15, width: Math.max(1, x(r.debit)), height: 11 }),
      svg("text", { x: left + x(Math.max(r.credit, r.debit)) + 6, y: yy + 18 }, COMPACT.format((r.credit + r.debit) / 100)),
      svg("rect", { class: "hit", x: 0, y: yy, width: W, height: rowH }),
    ];
    return href ? svg("a", { href: href(r.category), "aria-label": text }, title(text), parts) : svg("g", {}, title(text), parts);
  });
  return svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "group", "aria-label": `Activity by category in ${currency}` }, marks);
}

export const legend = (currency) => el("p", { class: "legend" },
  el("span", { class: "key credit" }, "credits (money in)"),
  el("span", { class: "key debit" }, "debits (money out)"), `amounts in ${currency}`);

/** months: [{month, closing_cents}] oldest first → the closing balance as a line, a dot per
 * month (each with its exact figure in a <title>), a dashed zero line when it crosses zero. */
export function balanceChart(months, currency, { width }) {
  const W = Math.max(300, Math.round(width || 720)), H = 220, left = 64, bottom = 28, top = 10;
  const plotW = W - left - 12, plotH = H - top - bottom;
  const values = months.map((m) => m.closing_cents);
  const max = Math.max(0, ...values), min = Math.min(0, ...values);
  const span = Math.max(1, max - min);
  const y = (v) => top + plotH - (plotH * (v - min)) / span;
  const step = plotW / Math.max(1, months.length - 1);
  const x = (i) => left + (months.length === 1 ? plotW / 2 : i * step);
  const grid = [0, 0.5, 1].map((f) => svg("g", { class: "grid" },
    svg("line", { x1: left, x2: W - 12, y1: y(min + span * f), y2: y(min + span * f) }),
    svg("text", { x: left - 6, y: y(min + span * f) + 4, "text-anchor": "end" }, COMPACT.format((min + span * f) / 100))));
  const path = months.map((m, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(m.closing_cents).toFixed(1)}`).join(" ");
  const every = Math.ceil(months.length / Math.max(2, Math.floor(plotW / 56)));
  const points = months.map((m, i) => {
    const text = `${monthName(m.month)}: closing balance ${money(m.closing_cents, currency)}`;
    return svg("g", { role: "img", "aria-label": text }, title(text),
      svg("circle", { class: "point", cx: x(i), cy: y(m.closing_cents), r: 3 }),
      // The first and last labels keep inside the chart (anchored at their edge).
      i % every === 0 ? svg("text", { x: x(i), y: H - 10, "text-anchor": i === 0 && months.length > 1 ? "start" : i === months.length - 1 && i > 0 ? "end" : "middle" },
        monthName(m.month).replace(" 20", " ’")) : null);
  });
  return svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "group", "aria-label": `Monthly closing balance in ${currency}` },
    grid, min < 0 ? svg("line", { class: "zero", x1: left, x2: W - 12, y1: y(0), y2: y(0) }) : null,
    svg("path", { class: "balance", d: path }), points);
}
