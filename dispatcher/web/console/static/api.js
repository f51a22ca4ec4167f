// The REST API as the console calls it: same-origin cookie, JSON, French errors from the server.

let unauthorized = () => {};

/** What to do when the session is gone (the console shows its login form). */
export function onUnauthorized(handler) { unauthorized = handler; }

export async function api(path, options = {}) {
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
  return response.status === 204 ? null : response.json();
}
