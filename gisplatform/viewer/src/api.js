// Same-origin requests to the platform, with the signed-in token as a Bearer header.
export const session = { token: sessionStorage.getItem("gp.token") || null };

export function setToken(token) {
  session.token = token || null;
  if (token) sessionStorage.setItem("gp.token", token);
  else sessionStorage.removeItem("gp.token");
}

export function authHeaders(token = session.token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// The platform writes absolute links with its public URL; the viewer always asks its own
// origin (works behind any host name and never leaves it).
export function rel(url) {
  return url ? url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]+/i, "") : url; // keeps {z}/{x}/{y} as they are
}

export class HttpError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}

// An answer that is not ok as an HttpError carrying its {code, description} body's text
async function failure(r) {
  let msg = `${r.status}`;
  let code;
  try { const j = await r.json(); msg = j.description || j.detail || msg; code = j.code; } catch { /* not JSON */ }
  return new HttpError(r.status, msg, code);
}

export async function getJSON(path, { token = session.token, signal } = {}) {
  const r = await fetch(path, { headers: { Accept: "application/json", ...authHeaders(token) }, signal });
  if (!r.ok) throw await failure(r);
  return r.json();
}

// POST (or `method`) a body to the platform: an object goes as JSON, a Blob as itself with
// `type` as its Content-Type; the JSON answer. HttpError for an answer that is not ok; a
// network failure (offline) rejects as fetch does (a TypeError).
export async function send(path, body, { method = "POST", type, token = session.token } = {}) {
  const blob = body instanceof Blob;
  const r = await fetch(path, { method, body: blob ? body : JSON.stringify(body), headers: {
    Accept: "application/json", "Content-Type": type || (blob ? body.type : "application/json"),
    ...authHeaders(token) } });
  if (!r.ok) throw await failure(r);
  return r.json();
}

export function q(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}
