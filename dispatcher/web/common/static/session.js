// The REST API as every signed-in page calls it: the session cookie, JSON bodies, the server's refusal.
// Each page keeps its own way of saying an expired session and a refusal (a login form, a redirect,
// form fields in red): it passes them in.

/** The server's reason for a refusal: its JSON `detail` (a string, pydantic's list, an object), or the status text. */
async function refusal(response) {
  try { return (await response.json()).detail ?? response.statusText; } catch { return response.statusText; }
}

/**
 * A client for one page.
 * - `onUnauthorized(path)`: called on a 401; returns the error to throw, or null to treat it as any refusal
 *   (a wrong password at login is a 401 too).
 * - `refused(status, detail)`: returns the error to throw for any other refusal.
 */
export function sessionClient({ onUnauthorized, refused }) {
  async function request(path, options = {}) {
    const response = await fetch(path, {
      credentials: "same-origin",
      headers: options.body ? { "Content-Type": "application/json" } : {},
      ...options,
    });
    if (response.status === 401) {
      const error = onUnauthorized(path);
      if (error) throw error;
    }
    if (!response.ok) throw refused(response.status, await refusal(response));
    return response;
  }

  /** JSON in and out; null for a 204. */
  async function api(path, options = {}) {
    const response = await request(path, options);
    return response.status === 204 ? null : response.json();
  }

  /** A list the server sends a page of: its rows, and how many there are in all (X-Total-Count). */
  async function apiPage(path) {
    const response = await request(path);
    const rows = await response.json();
    return { rows, total: Number(response.headers.get("X-Total-Count") ?? rows.length) };
  }

  const send = (method, path, body) => api(path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { api, apiPage, send };
}
