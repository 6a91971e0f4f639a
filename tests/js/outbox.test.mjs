// lockstep.js's outbox under Node (node --test), IndexedDB from fake-indexeddb: the backoff,
// what a push answer means, and flush() against a scripted server: applied once in order,
// 4xx dead letters, retryable failures kept with 5 → 10 → 20 s backoff up to maxAttempts,
// a lost response (409 mutation_gap), a batch refused whole (a new client id).
import "fake-indexeddb/auto";
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Outbox,
  backoff,
  outcome,
  retryAfterMs,
  settle,
} from "../../src/lockstep/client/static/outbox.js";

test("backoff: 5, 10, 20 s, then 20 s; never shorter than Retry-After", () => {
  assert.deepEqual([1, 2, 3, 4, 9].map((n) => backoff(n)), [5000, 10000, 20000, 20000, 20000]);
  assert.equal(backoff(1, 30000), 30000);
  assert.equal(backoff(3, 1000), 20000);
});

test("Retry-After: seconds or an HTTP date, capped at an hour", () => {
  assert.equal(retryAfterMs("7"), 7000);
  assert.equal(retryAfterMs(null), 0);
  assert.equal(retryAfterMs("999999"), 3600000);
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(retryAfterMs("Thu, 01 Jan 2026 00:00:30 GMT", now), 30000);
  assert.equal(retryAfterMs("soon"), 0);
});

test("outcome: what a push answer means", () => {
  assert.equal(outcome(200, { results: [] }).kind, "results");
  assert.deepEqual(outcome(409, { error: { code: "mutation_gap", details: { expected: 4 } } }), {
    kind: "gap", expected: 4,
  });
  assert.equal(outcome(401, { error: { code: "unauthorized" } }).kind, "auth");
  for (const status of [429, 500, 502, 503]) assert.equal(outcome(status, null).kind, "retry");
  for (const status of [400, 403, 404, 413, 422]) assert.equal(outcome(status, { error: {} }).kind, "reject");
});

test("settle: applied leave, rejected and conflicts are dead, a failure stops the batch", () => {
  const sent = [1, 2, 3, 4].map((id) => ({ mutation_id: id }));
  const result = settle(sent, [
    { mutation_id: 1, status: "applied", txid: 9 },
    { mutation_id: 2, status: "conflict", error: { code: "stale_version" } },
    { mutation_id: 3, status: "failed", error: { code: "database_unavailable", retryable: true } },
  ]);
  assert.deepEqual(result.applied.map((a) => a.mutation.mutation_id), [1]);
  assert.deepEqual(result.dead.map((d) => d.mutation.mutation_id), [2]);
  assert.equal(result.failed.mutation.mutation_id, 3);
  assert.equal(result.complete, false);
});

// A scripted POST /sync/push: the server's semantics (consecutive ids, duplicates answered
// from what was stored) with a queue of faults to inject.
function server() {
  const state = { last: new Map(), applied: [], faults: [], requests: 0 };
  state.send = async (body) => {
    state.requests += 1;
    const fault = state.faults.shift();
    if (fault === "network") throw new TypeError("Failed to fetch");
    if (typeof fault === "number") {
      return new Response(JSON.stringify({ error: { code: `http_${fault}` } }), {
        status: fault, headers: fault === 429 ? { "Retry-After": "30" } : {},
      });
    }
    const last = state.last.get(body.client_id) || 0;
    if (body.mutations[0].mutation_id > last + 1) {
      return Response.json({ error: { code: "mutation_gap", details: { expected: last + 1 } } }, { status: 409 });
    }
    const results = [];
    for (const m of body.mutations) {
      const known = state.last.get(body.client_id) || 0;
      if (m.mutation_id <= known) { results.push({ mutation_id: m.mutation_id, status: "applied", duplicate: true }); continue; }
      state.last.set(body.client_id, m.mutation_id);
      if (m.args.bad) {
        results.push({ mutation_id: m.mutation_id, status: "rejected", error: { code: "validation_failed", status: 422 } });
      } else {
        state.applied.push(m.args.n);
        results.push({ mutation_id: m.mutation_id, status: "applied", txid: 100 + m.mutation_id });
      }
    }
    if (fault === "lose") throw new TypeError("the response was lost");
    return Response.json({ client_id: body.client_id, last_mutation_id: state.last.get(body.client_id), results });
  };
  return state;
}

let scopes = 0;
async function outbox(options = {}) {
  scopes += 1;
  return Outbox.open(`test-${scopes}`, options);
}

test("flush: in order, each once; a refused mutation is a dead letter, the rest go on", async () => {
  const box = await outbox();
  const events = [];
  const listener = new BroadcastChannel(`lockstep:${box.scope}`);
  listener.onmessage = (e) => events.push(e.data.type);
  for (const n of [1, 2, 3]) await box.add("edit", n === 2 ? { n, bad: true } : { n });
  const api = server();
  const report = await box.flush(api.send);
  assert.deepEqual(api.applied, [1, 3]);
  assert.deepEqual(report.applied, [1, 3]);
  assert.deepEqual(report.dead, [2]);
  assert.equal((await box.pending()).length, 0);
  const dead = await box.deadLetters();
  assert.deepEqual(dead.map((d) => [d.mutation_id, d.status, d.error.code]), [[2, "rejected", "validation_failed"]]);
  await new Promise((resolve) => setImmediate(resolve)); // deliver the broadcast messages
  assert.ok(events.includes("applied") && events.includes("rejected") && events.includes("dead-letters"));
  await box.dismiss(dead[0].dead_id);
  assert.equal((await box.deadLetters()).length, 0);
  listener.close();
  box.close();
});

test("flush: network errors and 5xx are retried after 5, 10, 20 s, then the outbox stalls until resume()", async () => {
  const box = await outbox({ maxAttempts: 4 });
  await box.add("edit", { n: 1 });
  const api = server();
  const waits = [];
  for (const fault of ["network", 503, 500, "network"]) {
    api.faults.push(fault);
    const report = await box.flush(api.send);
    waits.push(report.waitMs);
    assert.equal(report.pending, 1);
    const [head] = await box.pending();
    await box.db.transaction("outbox", "readwrite").objectStore("outbox").put({ ...head, next_at: 0 }); // time passes
  }
  assert.deepEqual(waits, [5000, 10000, 20000, null]);
  const stalled = await box.flush(api.send);
  assert.equal(stalled.stalled, true);
  assert.equal(api.requests, 4); // a stalled outbox sends nothing
  await box.resume();
  const report = await box.flush(api.send);
  assert.deepEqual(report.applied, [1]);
  assert.deepEqual(api.applied, [1]);
  box.close();
});

test("flush: a 429 waits what Retry-After asks; not before", async () => {
  const box = await outbox();
  await box.add("edit", { n: 1 });
  const api = server();
  api.faults.push(429);
  assert.equal((await box.flush(api.send)).waitMs, 30000);
  const early = await box.flush(api.send);
  assert.ok(early.waitMs > 0 && early.waitMs <= 30000);
  assert.equal(api.requests, 1);
  box.close();
});

test("flush: a lost response is applied once (the next push is answered as duplicates)", async () => {
  const box = await outbox();
  for (const n of [1, 2]) await box.add("edit", { n });
  const api = server();
  api.faults.push("lose");
  await box.flush(api.send); // applied on the server, the answer lost
  await box.add("edit", { n: 3 });
  const [head] = await box.pending();
  await box.db.transaction("outbox", "readwrite").objectStore("outbox").put({ ...head, next_at: 0 });
  const report = await box.flush(api.send);
  assert.deepEqual(api.applied, [1, 2, 3]);
  assert.deepEqual(report.applied, [1, 2, 3]);
  assert.equal((await box.pending()).length, 0);
  box.close();
});

test("flush: a 409 mutation_gap the outbox cannot fill is reported; nothing is dropped", async () => {
  const box = await outbox();
  for (const n of [1, 2]) await box.add("edit", { n });
  const api = server();
  const id = await box.clientId();
  api.last.set(id, 0);
  const tx = box.db.transaction("outbox", "readwrite");
  tx.objectStore("outbox").delete(1); // id 1 gone from this outbox, never pushed
  await new Promise((resolve) => { tx.oncomplete = resolve; });
  const report = await box.flush(api.send);
  assert.match(report.error, /expects a mutation id/);
  assert.equal(report.pending, 1);
  assert.deepEqual(api.applied, []);
  box.close();
});

test("flush: a batch refused whole (4xx) dead-letters its head; the rest move to a new client id", async () => {
  const box = await outbox();
  for (const n of [1, 2, 3]) await box.add("edit", { n });
  const before = await box.clientId();
  const api = server();
  api.faults.push(413);
  const report = await box.flush(api.send);
  assert.deepEqual(report.dead, [1]);
  assert.notEqual(await box.clientId(), before);
  assert.deepEqual(api.applied, [2, 3]);
  assert.equal((await box.deadLetters())[0].error.status, 413);
  box.close();
});

test("open: retry options configured by the page apply where the worker opens the outbox", async () => {
  const box = await outbox();
  await box.configure({ options: { maxAttempts: 2, delays: [1000] } });
  const again = await Outbox.open(box.scope);
  assert.equal(again.options.maxAttempts, 2);
  assert.deepEqual(again.options.delays, [1000]);
  const explicit = await Outbox.open(box.scope, { maxAttempts: 7 });
  assert.equal(explicit.options.maxAttempts, 7);
  explicit.close();
  again.close();
  box.close();
});
