// lockstep's service worker: pushes outboxes in the background and keeps the app usable
// offline. Loaded by the (generated) /lockstep/sw.js, a module worker registered with scope
// "/" (the server sends Service-Worker-Allowed: /).
//
// * Background Sync (where the browser has it: Chromium): the page registers the tag
//   "lockstep:<scope>" when mutations wait; the browser fires "sync" once it is online, even
//   with no tab open. The worker flushes that scope's outbox with the access token the page
//   last stored, waiting out the 5 → 10 → 20 s backoff while it may; a failed sync is retried
//   by the browser later. Without Background Sync the page retries (lockstep.js).
// * The page can also ask: postMessage({type: "flush", scope}).
// * Offline reads: same-origin GETs are served network-first and kept in Cache Storage, so a
//   page visited once reloads offline. Answers to a bearer token are kept per user (the
//   token's "sub" claim, else the token), never shared between users. Shape requests
//   (long polls), realtime, pushes and no-store answers are never kept; lockstep's own
//   content-hashed files are served cache-first.

import { Outbox, backoff, retryAfterMs } from "./outbox.js";

const NEVER = [/\/v1\/shape(\/|$)/, /\/connection\//, /\/sync\/push$/];
const SYNC_WAIT_LIMIT = 60_000; // longer waits are left to the browser's next sync

function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function who(token) {
  let subject = token;
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    if (claims && claims.sub != null) subject = `sub:${claims.sub}`;
  } catch (error) {
    // not a JWT: the token itself names the caller
  }
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(subject));
  return [...new Uint8Array(digest).slice(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function cacheKey(request) {
  const auth = request.headers.get("authorization") || "";
  const [scheme, token] = auth.split(" ");
  if (!token || scheme.toLowerCase() !== "bearer") return request.url;
  const url = new URL(request.url);
  url.searchParams.set("lockstep-cache-user", await who(token));
  return url.href;
}

function storable(response) {
  const control = response.headers.get("cache-control") || "";
  return response.status === 200 && response.type === "basic" && !/no-store/i.test(control);
}

export function install(worker, { version, base, files = [] }) {
  const shell = `lockstep-files-${version}`;
  const data = "lockstep-data";

  worker.addEventListener("install", (event) => {
    // lockstep's own files first: a page that loaded them before this worker ran still
    // finds them offline.
    event.waitUntil(caches.open(shell).then((cache) => cache.addAll(files)).then(() => worker.skipWaiting()));
  });
  worker.addEventListener("activate", (event) => {
    event.waitUntil((async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("lockstep-files-") && name !== shell) await caches.delete(name);
      }
      await worker.clients.claim();
    })());
  });

  worker.addEventListener("fetch", (event) => {
    const request = event.request;
    const url = new URL(request.url);
    if (request.method !== "GET" || url.origin !== worker.location.origin) return;
    if (NEVER.some((pattern) => pattern.test(url.pathname))) return;
    if (request.cache === "no-store") return;
    if (url.pathname.startsWith(base)) {
      event.respondWith(cacheFirst(shell, request));
      return;
    }
    event.respondWith(networkFirst(data, request));
  });

  worker.addEventListener("message", (event) => {
    const message = event.data || {};
    if (message.type === "flush" && message.scope) event.waitUntil(flushScope(message.scope));
    if (message.type === "forget-data") event.waitUntil(caches.delete(data));
  });

  worker.addEventListener("sync", (event) => {
    if (!event.tag.startsWith("lockstep:")) return;
    event.waitUntil(syncScope(event.tag.slice("lockstep:".length)));
  });
}

async function cacheFirst(name, request) {
  const cache = await caches.open(name);
  const hit = await cache.match(request);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.status === 200) await cache.put(request, response.clone());
  return response;
}

async function networkFirst(name, request) {
  const key = await cacheKey(request);
  try {
    const response = await fetch(request);
    if (storable(response)) {
      const cache = await caches.open(name);
      await cache.put(key, response.clone());
    }
    return response;
  } catch (error) {
    const hit = await (await caches.open(name)).match(key);
    if (hit) return hit;
    throw error;
  }
}

async function send(outbox, body) {
  const token = await outbox.token();
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(await outbox.pushUrl(), {
    method: "POST", headers, body: JSON.stringify(body), cache: "no-store",
  });
}

async function flushScope(scope) {
  const outbox = await Outbox.open(scope);
  try {
    return await outbox.flush((body) => send(outbox, body));
  } finally {
    outbox.close();
  }
}

// One sync event: flush, wait out short backoffs, flush again; throw when mutations still
// wait, so the browser schedules another sync.
async function syncScope(scope) {
  for (;;) {
    const report = await flushScope(scope);
    if (!report.pending) return;
    if (report.waitMs !== null && report.waitMs <= SYNC_WAIT_LIMIT && !report.stalled) {
      await pause(report.waitMs);
      continue;
    }
    throw new Error(`lockstep: ${report.pending} mutations still wait (${report.error})`);
  }
}

export { backoff, retryAfterMs };
