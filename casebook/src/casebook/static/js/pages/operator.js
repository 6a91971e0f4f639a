// The operator page (admins), from the app's own numbers: this process's /metrics
// (Prometheus text: cache lookups, request latency histograms per route), the job queues
// (GET /jobs/queues) and the realtime connections (GET /realtime).
import { call, errorBox, send } from "../api.js";
import { card, count, el, percent, table } from "../format.js";

/** Prometheus text → [{name, labels, value}] (no HELP/TYPE lines). */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || line.startsWith("#")) continue;
    const labels = {};
    for (const pair of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** The q-quantile (0..1) of a cumulative histogram [{le, count}], linear within a bucket. */
export function quantile(buckets, q) {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted.length ? sorted[sorted.length - 1].count : 0;
  if (!total) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const b of sorted) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return lower; // beyond the last finite bucket
      const inside = b.count - below;
      return inside ? lower + ((b.le - lower) * (rank - below)) / inside : b.le;
    }
    lower = b.le; below = b.count;
  }
  return lower;
}

const ms = (seconds) => (seconds == null ? "–" : `${(seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0)} ms`);

/** Per route: requests (the histogram's count) and its buckets, busiest first. */
function routes(samples) {
  const byRoute = new Map();
  for (const s of samples.filter((x) => x.name === "http_request_duration_seconds_bucket")) {
    const route = `${s.labels.method} ${s.labels.route}`;
    if (!byRoute.has(route)) byRoute.set(route, { route, buckets: [] });
    byRoute.get(route).buckets.push({ le: Number(s.labels.le.replace("+Inf", "Infinity")), count: s.value });
  }
  const rows = [...byRoute.values()];
  for (const r of rows) r.requests = Math.max(...r.buckets.map((b) => b.count));
  return rows.sort((a, b) => b.requests - a.requests);
}

export async function render({ root, signal, navigate }) {
  document.title = "Operator · casebook";
  root.append(el("h1", {}, "Operator"),
    el("p", { class: "hint" }, "This server process's own figures since it started. ",
      el("button", { type: "button", class: "secondary", onclick: () => navigate(location.pathname, { replace: true }) }, "Refresh")));
  const [metrics, queues, realtime] = await Promise.allSettled([
    send("/metrics", { signal }).then((r) => r.text()).then(parseMetrics),
    call("/jobs/queues", { signal }),
    call("/realtime", { signal }),
  ]);
  if (signal.aborted) return;

  root.append(el("h2", {}, "Cache"));
  if (metrics.status === "fulfilled") {
    const lookups = metrics.value.filter((s) => s.name === "lockstep_cache_lookups_total");
    const of = (result) => lookups.filter((s) => s.labels.result === result).reduce((a, s) => a + s.value, 0);
    const hits = of("hit_l1") + of("hit_l2"), misses = of("miss");
    root.append(el("div", { class: "cards", id: "cache-stats" },
      card("Hit rate", percent(hits / (hits + misses)), `${count(hits)} hits of ${count(hits + misses)} lookups`),
      card("Where the hits came from", `${count(of("hit_l1"))} · ${count(of("hit_l2"))}`, "memory (L1) · shared store (L2)"),
      card("Bypassed", count(of("bypass")), "lookups that skipped the cache")));
    root.append(el("h2", {}, "Requests by route"), table([
      { label: "Route", value: (r) => el("code", {}, r.route) },
      { label: "Requests", num: true, value: (r) => count(r.requests) },
      ...[0.5, 0.95, 0.99].map((q) => ({ label: `p${100 * q}`, num: true, value: (r) => ms(quantile(r.buckets, q)) })),
    ], routes(metrics.value), { id: "route-rows", caption: "Requests by route", empty: "No request measured yet." }),
    el("p", { class: "hint" }, "Percentiles are estimated from the latency histogram's buckets."));
  } else root.append(errorBox(metrics.reason, "Could not read /metrics"));

  root.append(el("h2", {}, "Job queues"));
  root.append(queues.status === "fulfilled" ? table([
    { label: "Queue", value: (q) => q.queue },
    { label: "Waiting", num: true, value: (q) => count(q.queued) },
    { label: "Running", num: true, value: (q) => count(q.running) },
    { label: "Scheduled", num: true, value: (q) => count(q.scheduled) },
    { label: "Oldest waiting", num: true, value: (q) => `${q.oldest_queued_seconds.toFixed(1)} s` },
    { label: "State", value: (q) => (q.paused ? el("span", { class: "badge failed" }, "paused") : "running") },
  ], queues.value.items, { id: "queue-rows", caption: "Job queues", empty: "No queue." }) : errorBox(queues.reason, "Could not read the queues"));

  root.append(el("h2", {}, "Realtime connections"));
  if (realtime.status === "fulfilled") {
    const channels = Object.entries(realtime.value.channels).map(([name, c]) => ({ name, ...c }));
    root.append(el("p", { id: "operator-counts" }, `connections open: ${count(realtime.value.connections)}`),
      table([
        { label: "Channel", value: (c) => el("code", {}, c.name) },
        { label: "Clients", num: true, value: (c) => count(c.clients) },
        { label: "Users", num: true, value: (c) => count(c.users) },
      ], channels, { id: "channel-rows", caption: "Channels", empty: "No channel has subscribers." }));
  } else root.append(errorBox(realtime.reason, "Could not read the realtime connections"));
}
