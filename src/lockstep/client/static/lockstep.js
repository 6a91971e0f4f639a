// lockstep.js: the browser side of a lockstep app, as one ES module with no build step.
//
//   const { Lockstep } = await import(moduleUrl);   // served by Offline.install(app)
//   const ls = await Lockstep.start({ scope: userId, token: () => store.access,
//                                     refresh: async () => newAccessToken() });
//   await ls.mutate("case.update", { case_id: 7, title: "x" }, { base_version: 3, key: "cases:7" });
//   const { row, pending } = await ls.view("cases:7", serverRow, applyEdit);
//   ls.shape({ table: "cases", where: "id = $1", params: ["7"] }, (rows) => render(rows));
//   const sync = await ls.syncScope("my-cases", { onRows, onProgress });  // priority order
//   ls.on("rejected", ({ mutation, error }) => tell(error));   // rolled back: gone from views
//
// Guarantees (docs/offline.md, "The browser module"):
// * a mutation is in IndexedDB before mutate() resolves; pushed in order, applied once (by
//   (client_id, mutation_id) on the server, under a Web Lock between tabs); see outbox.js;
// * retries: when back online, on Background Sync (service worker) or timers (5 → 10 → 20 s);
//   4xx answers are dead letters (deadLetters(), the "rejected" event);
// * optimistic views: view() is the server row with this scope's queued mutations applied,
//   and applied ones until a shape followed by this module shows their txid; a rejected
//   mutation drops out of it (the rollback);
// * fetch(): the bearer token, one refresh on 401 (single-flight: one refresh at a time for
//   every caller of this page, and across tabs under a Web Lock when tokens are shared), an
//   ETag cache (If-None-Match, a 304 answered from the remembered body).

import { DEFAULTS, Outbox } from "./outbox.js";
import {
  Shape,
  ShapeStream,
  isChangeMessage,
  isControlMessage,
  isVisibleInSnapshot,
} from "./vendor/electric-sql-client/index.browser.mjs";

export { Outbox, Shape, ShapeStream };
export { backoff, outcome, retryAfterMs, settle } from "./outbox.js";

const WORKER_URL = new URL("../sw.js", import.meta.url).pathname; // /lockstep/sw.js

export class Lockstep {
  constructor(outbox, options) {
    this.outbox = outbox;
    this.scope = outbox.scope;
    this.options = options;
    this.listeners = new Map();
    this.etags = new Map(); // "who|url" → {etag, body, headers}
    this.awaiting = new Map(); // txid → [{mutation, result}] applied, not yet seen in a shape
    this.seen = new Set(); // txids seen in shapes (recent)
    this.snapshots = []; // snapshot-end headers seen: txids they make visible
    this.refreshing = null;
    this.timer = null;
    this.worker = null;
    this.channel = new BroadcastChannel(`lockstep:${this.scope}`);
    this.channel.onmessage = (event) => this._heard(event.data);
    this._online = () => this.resume();
    addEventListener("online", this._online);
  }

  /** Open `scope`'s outbox (one per user, say), register the service worker and push what
   * is pending. Options: token() (the access token, sync or async), refresh() (a new access
   * token; called one at a time), pushUrl, shapeUrl, worker (its URL, or false), realtime
   * (a centrifuge-js client, for subscribe()), maxAttempts, delays. */
  static async start(options) {
    const settings = {
      pushUrl: DEFAULTS.pushUrl,
      shapeUrl: "/v1/shape",
      scopesUrl: "/v1/sync/scopes",
      worker: WORKER_URL,
      token: () => null,
      refresh: null,
      realtime: null,
      ...options,
    };
    if (settings.scope == null) throw new Error("lockstep: start({scope}) names whose outbox this is");
    const retry = {
      ...(settings.maxAttempts ? { maxAttempts: settings.maxAttempts } : {}),
      ...(settings.delays ? { delays: settings.delays } : {}),
    };
    const outbox = await Outbox.open(String(settings.scope), { pushUrl: settings.pushUrl, ...retry });
    const lockstep = new Lockstep(outbox, settings);
    await outbox.configure({ token: await lockstep.token(), pushUrl: settings.pushUrl, options: retry });
    if (settings.worker && "serviceWorker" in navigator) {
      lockstep.worker = navigator.serviceWorker
        .register(settings.worker, { type: "module", scope: "/" })
        .then(() => navigator.serviceWorker.ready)
        .catch((error) => {
          lockstep._emit("worker-error", { error: String(error) });
          return null;
        });
    }
    lockstep.resume(); // a new page: earlier failures are forgotten, pending edits pushed
    return lockstep;
  }

  /** Sign-out: the worker forgets the access token and the answers it kept for offline
   * reads (queued mutations stay, for this scope's next sign-in). */
  async forget() {
    await this.outbox.configure({ token: null });
    const registration = this.worker ? await this.worker : null;
    if (registration && registration.active) registration.active.postMessage({ type: "forget-data" });
  }

  close() {
    removeEventListener("online", this._online);
    clearTimeout(this.timer);
    this.channel.close();
    this.outbox.close();
  }

  // -- events ---------------------------------------------------------------------------------

  /** Listen to outbox events: queued, applied, confirmed, rejected, retry, stalled,
   * unauthorized, dead-letters, renumbered, and "change" after any of them. */
  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type).delete(listener);
  }

  _emit(type, detail = {}) {
    for (const listener of this.listeners.get(type) || []) listener({ type, ...detail });
    if (type !== "change") {
      for (const listener of this.listeners.get("change") || []) listener({ type, ...detail });
    }
  }

  _heard(message) {
    if (!message || message.scope !== this.scope) return;
    if (message.type === "applied" && message.txid != null && message.mutation.key != null) {
      if (this._visible(message.txid)) {
        this._emit("applied", message);
        this._emit("confirmed", { mutation: message.mutation, txid: message.txid });
        return;
      }
      const list = this.awaiting.get(String(message.txid)) || [];
      list.push({ mutation: message.mutation, result: message.result });
      this.awaiting.set(String(message.txid), list);
    }
    if (message.type === "queued" || message.type === "retry") this._schedule(message.delay);
    if (message.type === "unauthorized") this._emit("unauthorized", message);
    else this._emit(message.type, message);
  }

  // -- tokens and fetch -----------------------------------------------------------------------

  async token() {
    return (await this.options.token()) || null;
  }

  /** A fresh access token after `stale` was refused: one refresh at a time (a refresh token
   * is used up by its refresh), and none when another caller already replaced `stale`. */
  async refreshed(stale) {
    const current = await this.token();
    if (current && current !== stale) return current;
    if (!this.options.refresh) throw new Error("lockstep: the token was refused and no refresh() was given");
    if (!this.refreshing) {
      const refresh = async () => {
        const now = await this.token();
        return now && now !== stale ? now : this.options.refresh();
      };
      this.refreshing = (async () => {
        const fresh = navigator.locks
          ? await navigator.locks.request(`lockstep-refresh:${this.scope}`, refresh)
          : await refresh();
        await this.outbox.configure({ token: fresh });
        return fresh;
      })().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  /** fetch() with the bearer token, one refresh and retry on 401, and (GET) the ETag cache. */
  async fetch(input, init = {}) {
    const method = (init.method || "GET").toUpperCase();
    const url = new URL(input, location.href).href;
    const send = async (token) => {
      const headers = new Headers(init.headers || {});
      if (token) headers.set("Authorization", `Bearer ${token}`);
      const key = `${token || ""}|${url}`;
      const known = method === "GET" && init.cache !== "no-store" ? this.etags.get(key) : null;
      if (known) headers.set("If-None-Match", known.etag);
      const response = await fetch(url, { ...init, headers });
      if (known && response.status === 304) {
        return new Response(known.body.slice(0), { status: 200, headers: known.headers });
      }
      const etag = response.headers.get("etag");
      if (method === "GET" && response.status === 200 && etag) {
        const body = await response.clone().arrayBuffer();
        this.etags.set(key, { etag, body, headers: new Headers(response.headers) });
      }
      return response;
    };
    const token = await this.token();
    const response = await send(token);
    if (response.status !== 401 || !this.options.refresh) return response;
    return send(await this.refreshed(token));
  }

  // -- the outbox -----------------------------------------------------------------------------

  /** Queue a mutation (in IndexedDB when this resolves) and push it when possible. */
  async mutate(name, args, { base_version = null, key = null } = {}) {
    const mutation = await this.outbox.add(name, args, { base_version, key });
    this.flush();
    return mutation;
  }

  pending() {
    return this.outbox.pending();
  }

  deadLetters() {
    return this.outbox.deadLetters();
  }

  dismiss(deadId) {
    return this.outbox.dismiss(deadId);
  }

  /** Push now, from this page (the service worker does the same in the background). */
  async flush() {
    try {
      await this.outbox.configure({ token: await this.token() });
      const report = await this.outbox.flush((body) =>
        this.fetch(this.options.pushUrl, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
          cache: "no-store",
        }),
      );
      if (report.pending && !report.stalled) {
        this._schedule(report.waitMs);
        this._backgroundSync();
      }
      this._emit("flushed", { report });
      return report;
    } catch (error) {
      this._emit("flush-error", { error: String(error) });
      return null;
    }
  }

  /** Forget earlier failures (the user asked, or the network is back) and push now. */
  async resume() {
    await this.outbox.resume();
    return this.flush();
  }

  _schedule(waitMs) {
    if (waitMs == null) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), waitMs);
  }

  async _backgroundSync() {
    const registration = this.worker ? await this.worker : null;
    if (registration && registration.sync) {
      await registration.sync.register(`lockstep:${this.scope}`).catch(() => {});
    }
  }

  // -- optimistic views -----------------------------------------------------------------------

  /** `row` (the server's) with this scope's mutations on `key` applied in order by
   * `apply(row, mutation)`: queued ones, and applied ones whose txid no shape has shown yet.
   * A rejected mutation is in neither: rendering the view again rolls it back. */
  async view(key, row, apply) {
    const applied = [];
    for (const list of this.awaiting.values()) {
      for (const { mutation, result } of list) {
        if (mutation.key === key) applied.push({ ...mutation, result });
      }
    }
    const queued = (await this.outbox.pending()).filter((m) => m.key === key);
    const pending = [...applied, ...queued];
    let out = row;
    for (const mutation of pending) out = apply(out, mutation);
    return { row: out, pending };
  }

  _visible(txid) {
    const key = String(txid);
    if (this.seen.has(key)) return true;
    return this.snapshots.some((snapshot) => isVisibleInSnapshot(key, snapshot));
  }

  _saw(txids) {
    for (const txid of txids) {
      const key = String(txid);
      this.seen.add(key);
      const confirmed = this.awaiting.get(key);
      if (confirmed) {
        this.awaiting.delete(key);
        for (const { mutation } of confirmed) this._emit("confirmed", { mutation, txid: key });
      }
    }
    if (this.seen.size > 10_000) this.seen = new Set([...this.seen].slice(-5_000));
  }

  // -- reads ----------------------------------------------------------------------------------

  /** Follow a shape (the Electric Shape API, through the vendored @electric-sql/client):
   * `onRows(rows)` after every up-to-date, rows as an array. Txids in its messages confirm
   * optimistic mutations. Returns {stream, shape, stop}. */
  shape(params, onRows, { onError } = {}) {
    let stale = null;
    const stream = new ShapeStream({
      url: new URL(this.options.shapeUrl, location.href).href,
      params,
      headers: {
        Authorization: async () => {
          stale = await this.token();
          return `Bearer ${stale}`;
        },
      },
      onError: async (error) => {
        if (error && error.status === 401 && this.options.refresh) {
          await this.refreshed(stale);
          return {};
        }
        if (onError) return onError(error);
        return undefined;
      },
    });
    // Subscribed before the Shape: txids are recorded before its subscribers render.
    const unsubscribe = stream.subscribe((messages) => {
      for (const message of messages) {
        if (isChangeMessage(message) && message.headers.txids) this._saw(message.headers.txids);
        if (isControlMessage(message) && message.headers.control === "snapshot-end") {
          this.snapshots.push(message.headers);
          if (this.snapshots.length > 20) this.snapshots.shift();
          this._saw([...this.awaiting.keys()].filter((txid) => this._visible(txid)));
        }
      }
    });
    const shape = new Shape(stream);
    const unsubscribeRows = shape.subscribe(({ rows }) => onRows(rows));
    return {
      stream,
      shape,
      stop: () => {
        unsubscribeRows();
        unsubscribe();
        stream.unsubscribeAll();
      },
    };
  }

  /** Sync the app's scope `name` (GET /v1/sync/scopes/{name}, bound to this user by the
   * server): its shapes by priority - a priority's shapes start together, the next one only
   * when each of them is up to date - then its prefetch paths through fetch() (the service
   * worker keeps their answers for offline reads). `onRows(name, rows)` after every
   * up-to-date of any of its shapes (they stay live); `onProgress({stage, state, name,
   * priority, rows, status, done, total})` as each shape starts and is synced ("shape") and
   * each path is fetched ("prefetch"). Resolves, when all are done, to {scope (the server's
   * answer), shapes (name -> {stream, shape, stop}), stop()}; rejects when the scope is
   * refused or a shape fails (the shapes started are stopped). */
  async syncScope(name, { onRows = () => {}, onProgress = () => {} } = {}) {
    const url = `${this.options.scopesUrl}/${encodeURIComponent(name)}`;
    const response = await this.fetch(url);
    if (!response.ok) {
      const error = new Error(`lockstep: sync scope ${name}: ${response.status}`);
      error.status = response.status;
      throw error;
    }
    const scope = await response.json();
    const total = scope.shapes.length + scope.prefetch.length;
    const followed = new Map();
    const stop = () => followed.forEach((handle) => handle.stop());
    let done = 0;
    const groups = [];
    for (const item of scope.shapes) {
      const last = groups[groups.length - 1];
      if (last && last[0].priority === item.priority) last.push(item);
      else groups.push([item]);
    }
    const start = (item) =>
      new Promise((resolve, reject) => {
        let synced = false;
        const report = (state, extra = {}) =>
          onProgress({ stage: "shape", state, name: item.name, priority: item.priority, done, total, ...extra });
        report("syncing");
        const handle = this.shape(
          item.params,
          (rows) => {
            onRows(item.name, rows);
            if (!synced) {
              synced = true;
              done += 1;
              report("synced", { rows: rows.length });
              resolve();
            }
          },
          {
            onError: (error) => {
              if (!synced) reject(error);
              return undefined;
            },
          },
        );
        followed.set(item.name, handle);
      });
    try {
      for (const group of groups) await Promise.all(group.map(start));
    } catch (error) {
      stop();
      throw error;
    }
    for (const path of scope.prefetch) {
      let status = 0;
      try {
        status = (await this.fetch(path)).status;
      } catch (error) {
        status = 0; // offline meanwhile: the shapes are synced, the page is not kept
      }
      done += 1;
      onProgress({ stage: "prefetch", state: "fetched", name: path, status, done, total });
    }
    this._emit("scope-synced", { scope: scope.scope, version: scope.version });
    return { scope, shapes: followed, stop };
  }

  /** Live publications of a realtime channel, through the app's own centrifuge-js client
   * (options.realtime); returns a function that stops them. */
  subscribe(channel, onPublication) {
    const client = this.options.realtime;
    if (!client) throw new Error("lockstep: start({realtime}) needs a centrifuge-js client");
    const subscription = client.getSubscription(channel) || client.newSubscription(channel);
    const handler = (ctx) => onPublication(ctx.data, ctx);
    subscription.on("publication", handler);
    subscription.subscribe();
    return () => subscription.removeListener("publication", handler);
  }
}
