// Vigie administration — shared helpers: REST calls, French errors, Paris times, cells, confirmation.
// Every string from the server goes through textContent.

import { sessionClient } from "/common/static/session.js";

export const $ = (id) => document.getElementById(id);
export const PARIS = "Europe/Paris";
const dayTime = new Intl.DateTimeFormat("fr-FR", {
  timeZone: PARIS, day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit",
  second: "2-digit",
});
export const parisTime = (iso) => (iso ? dayTime.format(new Date(iso)) : "—");

// Pydantic's error kinds, said in French (its own messages are English).
const KIND_FR = {
  missing: "obligatoire", string_too_short: "trop court", string_too_long: "trop long",
  string_pattern_mismatch: "format invalide", enum: "valeur non admise", literal_error: "valeur non admise",
  int_parsing: "nombre attendu", too_short: "trop peu d'éléments", too_long: "trop d'éléments",
  extra_forbidden: "champ inconnu", greater_than_equal: "trop petit", less_than_equal: "trop grand",
};

function validationText(detail) {
  return detail.map((d) => {
    const where = (d.loc || []).filter((p) => p !== "body").join(".");
    const message = d.type === "value_error" ? String(d.msg).replace(/^Value error, /, "") : KIND_FR[d.type] || "valeur invalide";
    return where ? `${where} : ${message}` : message;
  }).join(" ; ");
}

export class ApiError extends Error {
  constructor(status, message, fields = [], problems = []) {
    super(message);
    this.status = status;
    this.fields = fields;
    this.problems = problems;
  }
}

function refused(status, detail) {
  if (Array.isArray(detail)) return new ApiError(status, validationText(detail), detail.map((d) => d.loc[d.loc.length - 1]));
  if (detail && typeof detail === "object") return new ApiError(status, detail.message || "refusé", [], detail.problems || []);
  return new ApiError(status, String(detail || `erreur ${status}`));
}

/** The admin screens have no login of their own: an expired session goes back to the console's. */
function sessionExpired() {
  location.assign("/console/");
  return new ApiError(401, "Session expirée : reconnectez-vous.");
}

/** REST calls over the session cookie; errors are {@link ApiError}s, with the fields a form should mark. */
export const { api, apiPage, send } = sessionClient({ onUnauthorized: sessionExpired, refused });

export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

/** A table cell that names its column (shown before the value on phones). */
export function cell(label, content) {
  const td = document.createElement("td");
  td.dataset.label = label;
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "—";
  return td;
}

export function badge(text, tone) {
  return el("span", text, `badge ${tone || ""}`.trim());
}

/** Show an error (and, for a directory error, each line-precise problem) in ``node``. */
export function showError(node, error) {
  node.replaceChildren(el("span", error.message));
  if (error.problems && error.problems.length) {
    node.append(el("pre", error.problems.map((p) => p.text).join("\n"), "problems"));
  }
}

/** The confirmation step before a destructive action; resolves true only on the confirm button. */
export function confirmAction(title, text, okLabel) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}
