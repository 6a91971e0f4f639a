// The API client: bearer token, one renewal through the refresh token on a 401, and the
// error envelope {"error": {code, message, request_id, details}} as an ApiError.
import { el } from "./format.js";

export const API = "/api/v1";
const store = sessionStorage;

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "error";
    this.requestId = error.request_id || null;
    this.details = error.details || null;
  }
}

export const session = {
  get token() { return store.getItem("casebook.token"); },
  get refreshToken() { return store.getItem("casebook.refresh"); },
  save(body) {
    store.setItem("casebook.token", body.access_token);
    store.setItem("casebook.refresh", body.refresh_token);
  },
  clear() { store.removeItem("casebook.token"); store.removeItem("casebook.refresh"); },
  onExpired: () => {},
};

async function envelope(response) {
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : null;
  return new ApiError(response.status, (body && body.error) || { message: response.statusText });
}

export async function login(form) {
  const response = await fetch(`${API}/auth/token`, { method: "POST", body: new URLSearchParams(form) });
  if (!response.ok) throw await envelope(response);
  session.save(await response.json());
}

let renewing = null;
/** New tokens from the refresh token (used up by its refresh: concurrent callers share one). */
export function refreshTokens() {
  renewing ||= (async () => {
    try {
      const response = await fetch(`${API}/auth/refresh`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: session.refreshToken }), cache: "no-store",
      });
      if (!response.ok) throw await envelope(response);
      session.save(await response.json());
      return session.token;
    } finally { renewing = null; }
  })();
  return renewing;
}

let through = null;
/** While lockstep's browser module runs (offline.js), renewals go through its single-flight
 * refresh (one at a time for the page and the module; none when `stale` was already
 * replaced); null goes back to refreshTokens. */
export function renewThrough(fn) { through = fn; }

/** A new access token after `stale` (by default the current one) was refused. */
export function renew(stale = session.token) {
  return through ? through(stale) : refreshTokens();
}

/** fetch under /api/v1 with the caller's token; the Response when it is a success. */
export async function send(path, options = {}, retried = false) {
  const headers = { ...(options.headers || {}) };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  const url = path.startsWith("/api/") || path === "/metrics" ? path : API + path;
  const response = await fetch(url, { ...options, headers });
  if (response.status === 401 && !retried && session.refreshToken) {
    try { await renew(token); } catch { session.onExpired(); throw await envelope(response); }
    return send(path, options, true);
  }
  if (response.status === 401) session.onExpired();
  if (!response.ok) throw await envelope(response);
  return response;
}

export async function call(path, options) {
  const response = await send(path, options);
  return response.status === 204 ? null : response.json();
}

/** Save a file an API route serves (the token cannot ride on a plain link). */
export async function download(path, filename) {
  const blob = await (await send(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** An error shown readably: what happened, and the ids support asks for. */
export function errorBox(error, what) {
  const isApi = error instanceof ApiError;
  const details = isApi && Array.isArray(error.details) ? error.details : [];
  return el("div", { class: "error-box", role: "alert" },
    el("strong", {}, what ? `${what}: ` : "", error.message),
    details.length ? el("ul", {}, details.slice(0, 10).map((d) =>
      el("li", {}, d.loc ? `${d.loc.filter((p) => p !== "body" && p !== "query").join(".")}: ` : "", d.msg || d.reason || JSON.stringify(d)))) : null,
    isApi ? el("small", {}, `${error.status} ${error.code}${error.requestId ? ` · request ${error.requestId}` : ""}`) : null);
}
