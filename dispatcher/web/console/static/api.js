// The REST API as the console calls it: same-origin cookie, JSON, French errors from the server.

let unauthorized = () => {};

/** What to do when the session is gone (the console shows its login form). */
export function onUnauthorized(handler) { unauthorized = handler; }

export async function api(path, options = {}) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

/** A list the server sends a page of: its rows, and how many there are in all (X-Total-Count). */
export async function apiPage(path) {
  const response = await request(path, {});
  const rows = await response.json();
  return { rows, total: Number(response.headers.get("X-Total-Count") ?? rows.length) };
}

async function request(path, options) {
  const response = await fetch(path, {
    credentials: "same-origin",
    headers: options.body ? { "Content-Type": "application/json" } : {},
    ...options,
  });
  if (response.status === 401 && path !== "/api/auth/login") {
    unauthorized("Session expirée : reconnectez-vous.");
    throw new Error("session expirée");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch { /* not JSON */ }
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join(" ; ");
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response;
}
