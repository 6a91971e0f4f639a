// lockstep's browser outbox: mutations kept in IndexedDB, pushed in order to POST /sync/push.
//
// Shared by the page (lockstep.js) and the service worker (worker.js). The same semantics as
// the Python client's Outbox (lockstep.client.outbox):
//
// * add() stores {mutation_id, name, args, base_version} in one IndexedDB transaction with the
//   next id of this outbox's client id, before anything else happens: the order of add() is
//   the order the server applies them in, and a reload or a closed tab loses nothing.
// * flush() pushes what is pending, in batches, holding the Web Lock "lockstep-flush:<scope>"
//   so two tabs (and the service worker) never push the same outbox at once; a push is
//   idempotent by (client_id, mutation_id), so a flush interrupted anywhere is safe to repeat.
// * applied (or already applied: a 409 mutation_gap names the next id) leaves the outbox with
//   its txid; rejected and conflicting mutations (a 4xx) move to the dead letters with their
//   error; a network error, a 429 or a 5xx keeps them, to retry after 5, 10, 20 s (or what
//   Retry-After asks), up to maxAttempts; then the outbox is "stalled" until resume().
// * every step is announced on the BroadcastChannel "lockstep:<scope>" (every tab hears it).
//
// The decisions (backoff, what an answer means) are plain functions, tested under Node.

export const DEFAULTS = Object.freeze({
  pushUrl: "/sync/push",
  batch: 50,
  maxAttempts: 4,
  delays: [5000, 10000, 20000], // after the 1st, 2nd, 3rd (and later) failed attempt
});

// -- decisions (pure) -------------------------------------------------------------------------

/** Milliseconds to wait after `attempts` failed attempts: 5 → 10 → 20 s, never shorter than
 * what the server's Retry-After asked. */
export function backoff(attempts, retryAfter = 0, delays = DEFAULTS.delays) {
  const index = Math.min(Math.max(attempts, 1), delays.length) - 1;
  return Math.max(delays[index], retryAfter || 0);
}

/** A Retry-After header (seconds or an HTTP date) in milliseconds, capped at an hour. */
export function retryAfterMs(value, now = Date.now()) {
  if (!value) return 0;
  const text = String(value).trim();
  const hour = 3600 * 1000;
  if (/^\d+$/.test(text)) return Math.min(Number(text) * 1000, hour);
  const when = Date.parse(text);
  return Number.isNaN(when) ? 0 : Math.max(0, Math.min(when - now, hour));
}

/** What one answer of POST /sync/push means for the batch (`body` is its parsed JSON):
 * results | gap (applied before: the server expects `expected`) | auth (refresh and retry)
 * | retry (429, 5xx: nothing done) | reject (another 4xx: this batch can never pass). */
export function outcome(status, body) {
  const error = (body && body.error) || {};
  if (status === 200 && body && Array.isArray(body.results)) {
    return { kind: "results", results: body.results };
  }
  if (status === 409 && error.code === "mutation_gap") {
    return { kind: "gap", expected: Number(error.details && error.details.expected) };
  }
  if (status === 401) return { kind: "auth", error };
  if (status === 429 || status >= 500 || error.retryable === true) return { kind: "retry", error };
  return { kind: "reject", error: { status, ...error } };
}

/** Sort a batch's per-mutation results: applied ones leave, rejected and conflicting ones
 * are dead letters, the first failed one stops the batch (retried later). */
export function settle(sent, results) {
  const byId = new Map(sent.map((m) => [m.mutation_id, m]));
  const applied = [];
  const dead = [];
  let failed = null;
  for (const result of results) {
    const mutation = byId.get(result.mutation_id);
    if (!mutation) continue;
    if (result.status === "applied") applied.push({ mutation, result });
    else if (result.status === "rejected" || result.status === "conflict") dead.push({ mutation, result });
    else { failed = { mutation, result }; break; }
  }
  const complete = failed === null && results.length >= sent.length;
  return { applied, dead, failed, complete };
}

// -- IndexedDB --------------------------------------------------------------------------------

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function finished(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
  });
}

export function databaseName(scope) {
  return `lockstep-outbox:${scope}`;
}

export function openDatabase(scope) {
  const opening = indexedDB.open(databaseName(scope), 1);
  opening.onupgradeneeded = () => {
    const db = opening.result;
    db.createObjectStore("meta");
    db.createObjectStore("outbox", { keyPath: "mutation_id" });
    // Dead letters outlive client ids (a rejected batch retires one): their own key.
    db.createObjectStore("dead", { keyPath: "dead_id", autoIncrement: true });
  };
  return request(opening);
}

const wire = (m) => ({
  mutation_id: m.mutation_id, name: m.name, args: m.args, base_version: m.base_version ?? null,
});

/** One scope's outbox (a user's, usually): see the module docs. */
export class Outbox {
  constructor(db, scope, options = {}) {
    this.db = db;
    this.scope = scope;
    this.options = { ...DEFAULTS, ...options };
    this.channel = new BroadcastChannel(`lockstep:${scope}`);
  }

  /** `options` (pushUrl, batch, maxAttempts, delays) override those configure() stored. */
  static async open(scope, options = {}) {
    const db = await openDatabase(scope);
    const stored = await request(db.transaction("meta", "readonly").objectStore("meta").get("options"));
    return new Outbox(db, scope, { ...(stored || {}), ...options });
  }

  close() {
    this.channel.close();
    this.db.close();
  }

  emit(type, detail = {}) {
    this.channel.postMessage({ type, scope: this.scope, ...detail });
  }

  async _meta(tx, name) {
    return request(tx.objectStore("meta").get(name));
  }

  /** Keep what the service worker needs to push without a page: the access token (it
   * cannot refresh one: a worker's push answered 401 waits for a page), the push URL and
   * the retry options. */
  async configure({ token, pushUrl, options } = {}) {
    const tx = this.db.transaction("meta", "readwrite");
    if (token !== undefined) tx.objectStore("meta").put(token, "token");
    if (pushUrl !== undefined) tx.objectStore("meta").put(pushUrl, "push_url");
    if (options !== undefined) tx.objectStore("meta").put(options, "options"); // the worker's too
    await finished(tx);
  }

  async token() {
    return (await this._meta(this.db.transaction("meta", "readonly"), "token")) || null;
  }

  async pushUrl() {
    const url = await this._meta(this.db.transaction("meta", "readonly"), "push_url");
    return url || this.options.pushUrl;
  }

  /** This outbox's client id (made on first use, kept until a rejected batch retires it). */
  async clientId() {
    const tx = this.db.transaction("meta", "readwrite");
    let id = await this._meta(tx, "client_id");
    if (!id) {
      id = `web-${crypto.randomUUID()}`;
      tx.objectStore("meta").put(id, "client_id");
    }
    await finished(tx);
    return id;
  }

  /** Queue a mutation (durable when this resolves); its record, with its mutation_id.
   * `key` names what it edits (e.g. "cases:7"), for optimistic views; it is not sent. */
  async add(name, args, { base_version = null, key = null } = {}) {
    const tx = this.db.transaction(["meta", "outbox"], "readwrite");
    const meta = tx.objectStore("meta");
    if (!(await this._meta(tx, "client_id"))) meta.put(`web-${crypto.randomUUID()}`, "client_id");
    const next = (await this._meta(tx, "next_id")) || 1;
    const record = {
      mutation_id: next, name, args, base_version, key,
      attempts: 0, next_at: 0, queued_at: Date.now(), last_error: null,
    };
    tx.objectStore("outbox").put(record);
    meta.put(next + 1, "next_id");
    await finished(tx);
    this.emit("queued", { mutation: record });
    return record;
  }

  async pending() {
    const tx = this.db.transaction("outbox", "readonly");
    return request(tx.objectStore("outbox").getAll()); // in key order: mutation_id
  }

  async deadLetters() {
    const tx = this.db.transaction("dead", "readonly");
    return request(tx.objectStore("dead").getAll());
  }

  /** Forget a dead letter (the user has seen it): its `dead_id`. */
  async dismiss(deadId) {
    const tx = this.db.transaction("dead", "readwrite");
    tx.objectStore("dead").delete(deadId);
    await finished(tx);
    this.emit("dead-letters");
  }

  /** Forget earlier failures (back online, or the user asked): the next flush pushes now. */
  async resume() {
    const tx = this.db.transaction("outbox", "readwrite");
    const store = tx.objectStore("outbox");
    for (const m of await request(store.getAll())) {
      if (m.attempts || m.next_at) store.put({ ...m, attempts: 0, next_at: 0 });
    }
    await finished(tx);
  }

  /** Push what is pending, in order, as far as the server and the network allow.
   * `send(body)` POSTs the JSON body to the push URL with the caller's credentials and
   * resolves to its Response (it throws on a network error). Resolves to a report:
   * {applied, dead, pending, waitMs, stalled, error}. */
  async flush(send) {
    if (typeof navigator !== "undefined" && navigator.locks) {
      return navigator.locks.request(`lockstep-flush:${this.scope}`, () => this._flush(send));
    }
    return this._flush(send); // no Web Locks: the server's idempotency still applies once
  }

  async _flush(send) {
    const report = { applied: [], dead: [], pending: 0, waitMs: null, stalled: false, error: null };
    for (;;) {
      const pending = await this.pending();
      report.pending = pending.length;
      if (!pending.length) return report;
      const head = pending[0];
      if (head.attempts >= this.options.maxAttempts) {
        report.stalled = true;
        report.error = head.last_error;
        return report;
      }
      const now = Date.now();
      if (head.next_at > now) {
        report.waitMs = head.next_at - now;
        return report;
      }
      if (typeof navigator !== "undefined" && navigator.onLine === false) {
        report.error = "offline"; // not an attempt: the "online" event brings us back
        return report;
      }
      const batch = pending.slice(0, this.options.batch);
      const body = { client_id: await this.clientId(), mutations: batch.map(wire) };
      let response;
      let answer = null;
      try {
        response = await send(body);
        answer = await response.json().catch(() => null);
      } catch (error) {
        await this._failed(head, "network_error", 0, report);
        return report;
      }
      const what = outcome(response.status, answer);
      const waitAsked = retryAfterMs(response.headers.get("retry-after"));
      if (what.kind === "results") {
        const sorted = settle(batch, what.results);
        await this._settle(sorted, report);
        if (sorted.failed) {
          const error = sorted.failed.result.error || {};
          await this._failed(sorted.failed.mutation, error.code || "failed", waitAsked, report);
          return report;
        }
        continue;
      }
      if (what.kind === "gap") {
        // Applied before a response was lost: everything below `expected` is done.
        const done = batch.filter((m) => m.mutation_id < what.expected);
        if (!done.length) {
          report.error = "the server expects a mutation id this outbox no longer has";
          return report;
        }
        const applied = done.map((mutation) => ({
          mutation, result: { mutation_id: mutation.mutation_id, status: "applied", txid: null, duplicate: true },
        }));
        await this._settle({ applied, dead: [] }, report);
        continue;
      }
      if (what.kind === "auth") {
        report.error = "unauthorized";
        this.emit("unauthorized");
        return report;
      }
      if (what.kind === "retry") {
        await this._failed(head, what.error.code || `http_${response.status}`, waitAsked, report);
        return report;
      }
      // A 4xx for the whole batch: the server recorded nothing of it, and never will. The
      // head is a dead letter; the rest move to a new client id (the old one expects the
      // head's id next, forever), in the same order.
      await this._retire(head, what.error, report);
    }
  }

  async _settle({ applied, dead }, report) {
    const tx = this.db.transaction(["outbox", "dead"], "readwrite");
    for (const { mutation } of applied) tx.objectStore("outbox").delete(mutation.mutation_id);
    for (const { mutation, result } of dead) {
      tx.objectStore("outbox").delete(mutation.mutation_id);
      tx.objectStore("dead").put({ ...mutation, status: result.status, error: result.error, dead_at: Date.now() });
    }
    await finished(tx);
    for (const { mutation, result } of applied) {
      report.applied.push(mutation.mutation_id);
      this.emit("applied", { mutation, result, txid: result.txid ?? null });
    }
    for (const { mutation, result } of dead) {
      report.dead.push(mutation.mutation_id);
      this.emit("rejected", { mutation, result, error: result.error });
    }
    if (dead.length) this.emit("dead-letters");
  }

  async _failed(mutation, code, retryAfter, report) {
    const attempts = mutation.attempts + 1;
    const delay = backoff(attempts, retryAfter, this.options.delays);
    const tx = this.db.transaction("outbox", "readwrite");
    const current = await request(tx.objectStore("outbox").get(mutation.mutation_id));
    if (current) {
      tx.objectStore("outbox").put({ ...current, attempts, next_at: Date.now() + delay, last_error: code });
    }
    await finished(tx);
    report.error = code;
    if (attempts >= this.options.maxAttempts) {
      report.stalled = true;
      this.emit("stalled", { mutation_id: mutation.mutation_id, attempts, error: code });
    } else {
      report.waitMs = delay;
      this.emit("retry", { mutation_id: mutation.mutation_id, attempts, delay, error: code });
    }
  }

  async _retire(head, error, report) {
    const tx = this.db.transaction(["meta", "outbox", "dead"], "readwrite");
    const outbox = tx.objectStore("outbox");
    const rest = (await request(outbox.getAll())).filter((m) => m.mutation_id !== head.mutation_id);
    outbox.clear();
    tx.objectStore("dead").put({ ...head, status: "rejected", error, dead_at: Date.now() });
    const renumbered = rest.map((m, i) => ({ ...m, mutation_id: i + 1, previous_id: m.mutation_id }));
    for (const m of renumbered) outbox.put(m);
    const meta = tx.objectStore("meta");
    meta.put(`web-${crypto.randomUUID()}`, "client_id");
    meta.put(renumbered.length + 1, "next_id");
    await finished(tx);
    report.dead.push(head.mutation_id);
    this.emit("rejected", { mutation: head, result: { status: "rejected", error }, error });
    this.emit("renumbered", { ids: renumbered.map((m) => [m.previous_id, m.mutation_id]) });
    this.emit("dead-letters");
  }
}
