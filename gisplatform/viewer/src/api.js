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
  constructor(status, message) { super(message); this.status = status; }
}

export async function getJSON(path, { token = session.token, signal } = {}) {
  const r = await fetch(path, { headers: { Accept: "application/json", ...authHeaders(token) }, signal });
  if (!r.ok) {
    let msg = `${r.status}`;
    try { const j = await r.json(); msg = j.description || j.detail || msg; } catch { /* not JSON */ }
    throw new HttpError(r.status, msg);
  }
  return r.json();
}

export function q(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}
