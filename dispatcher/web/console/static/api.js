// The REST API as the console calls it: same-origin cookie, JSON, French errors from the server.

import { sessionClient } from "/common/static/session.js";

let unauthorized = () => {};

/** What to do when the session is gone (the console shows its login form). */
export function onUnauthorized(handler) { unauthorized = handler; }

/** A wrong password at login is a refusal like any other; elsewhere a 401 means the session is gone. */
function sessionExpired(path) {
  if (path === "/api/auth/login") return null;
  unauthorized("Session expirée : reconnectez-vous.");
  return new Error("session expirée");
}

function refused(status, detail) {
  if (Array.isArray(detail)) return new Error(detail.map((d) => d.msg).join(" ; "));
  if (typeof detail === "string" && detail) return new Error(detail);
  return new Error(detail ? JSON.stringify(detail) : `erreur ${status}`);
}

export const { api, apiPage } = sessionClient({ onUnauthorized: sessionExpired, refused });
