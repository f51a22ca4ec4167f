// Journal d'audit: newest first, filtered by user, action and dates (Europe/Paris days).
import { $, api, cell, el, parisTime } from "./common.js";

export const ACTION_FR = {
  "auth.login": "Connexion", "auth.login_failed": "Échec de connexion", "auth.logout": "Déconnexion",
  "alert.location.read": "Lecture de position", "alert.acknowledge": "Prise en charge",
  "alert.resolve": "Clôture d'alerte", "alert.false_alarm": "Fausse alerte", "alert.take_over": "Prise en main",
  "alert.note": "Note sur une alerte", "alert.report": "Fiche de signalement",
  "stats.export": "Export de statistiques", "config.change": "Modification de configuration",
  "visit.change": "Visite modifiée", "visit.read": "Lecture de visite", "retention.purge": "Purge RGPD",
  "device.test": "Test de balise",
};
const KIND_FR = {
  user: "compte", device: "balise", practitioner: "praticien", site: "site", convention: "convention",
  alert: "alerte", visit: "visite",
};
const CHANGE_FR = { create: "création", update: "modification", revoke: "révocation" };
const KEY_FR = {
  role: "rôle", conventions: "conventions", fields: "champs", username: "identifiant", disabled: "désactivé",
  format: "format", rows: "lignes", by: "regroupement", pins_changed: "PIN changés", kind: "type",
  via: "par", count: "nombre", retention_days: "conservation (jours)", alerts: "alertes", visits: "visites",
  last_fixes: "dernières positions", positions: "positions", sessions: "sessions",
  login_failures: "échecs de connexion", reason: "motif", state: "état",
};
const VALUE_FR = {
  admin: "administrateur", operator: "opérateur", practitioner: "praticien", true: "oui", false: "non",
  display_name: "nom affiché", password: "mot de passe", practitioner_id: "praticien", label: "libellé",
  site_id: "site", heartbeat_interval_s: "intervalle de signal", month: "mois", convention: "convention",
  json: "JSON", csv: "CSV", yaml: "YAML",
};
const valueFr = (v) => VALUE_FR[String(v)] ?? String(v);
const PAGE = 100;
const state = { oldest: null, filled: false };

/** Midnight in Paris of a yyyy-mm-dd day, as an ISO instant with its offset. */
function parisMidnight(day) {
  const probe = new Date(`${day}T12:00:00Z`);
  const parts = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Paris", timeZoneName: "longOffset" })
    .formatToParts(probe).find((p) => p.type === "timeZoneName").value;  // "GMT+01:00"
  const offset = parts.replace("GMT", "") || "+00:00";
  return `${day}T00:00:00${offset}`;
}

function nextDay(day) {
  const d = new Date(`${day}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

function detailText(e) {
  const d = { ...e.detail };
  const parts = [];
  if (d.change) { parts.push(CHANGE_FR[d.change] || d.change); delete d.change; }
  for (const [k, v] of Object.entries(d)) {
    const shown = Array.isArray(v) ? (v.length ? v.map(valueFr).join(", ") : "aucune") : valueFr(v);
    parts.push(`${KEY_FR[k] || k} : ${shown}`);
  }
  return parts.join(" ; ") || "—";
}

function row(e) {
  const tr = el("tr");
  tr.dataset.action = e.action;
  const target = e.target_kind ? `${KIND_FR[e.target_kind] || e.target_kind} ${e.target_id ?? ""}`.trim() : "—";
  tr.append(
    cell("Date", parisTime(e.at)),
    cell("Utilisateur", e.username || "—"),
    cell("Action", ACTION_FR[e.action] || e.action),
    cell("Objet", target),
    cell("Détail", detailText(e)),
    cell("Adresse IP", e.ip || "—"),
  );
  return tr;
}

// The user filter: accounts offered as the admin types (never the whole list: one per
// practitioner nationally), each username remembered with its id.
const known = new Map();
let typing = null;

async function suggestUsers(typed) {
  const found = await api(`/api/users?q=${encodeURIComponent(typed)}&limit=20`);
  for (const u of found) known.set(u.username, u.id);
  $("f-user-list").replaceChildren(...found.map((u) => {
    const option = el("option", u.display_name);
    option.value = u.username;
    return option;
  }));
}

/** The id of the account typed, null for every account; 0 (no account has it) for an unknown one. */
async function chosenUser() {
  const typed = $("f-user").value.trim();
  if (!typed) return null;
  if (!known.has(typed)) await suggestUsers(typed);
  return known.get(typed) ?? 0;
}

async function query(beforeId) {
  const q = new URLSearchParams({ limit: String(PAGE) });
  const user = await chosenUser();
  if (user !== null) q.set("user_id", String(user));
  if ($("f-action").value) q.set("action", $("f-action").value);
  if ($("f-since").value) q.set("since", parisMidnight($("f-since").value));
  if ($("f-until").value) q.set("until", parisMidnight(nextDay($("f-until").value)));
  if (beforeId) q.set("before_id", String(beforeId));
  return `/api/audit?${q}`;
}

async function load(append) {
  const entries = await api(await query(append ? state.oldest : null));
  const body = $("audit").tBodies[0];
  if (append) body.append(...entries.map(row));
  else body.replaceChildren(...entries.map(row));
  state.oldest = entries.length ? entries[entries.length - 1].id : state.oldest;
  $("audit-more").hidden = entries.length < PAGE;
  $("audit-empty").hidden = body.childElementCount > 0;
}

export async function showAudit() {
  if (!state.filled) {
    state.filled = true;
    for (const [action, label] of Object.entries(ACTION_FR)) {
      const option = el("option", label);
      option.value = action;
      $("f-action").append(option);
    }
  }
  await load(false);
}

export function initAudit() {
  $("audit-filters").addEventListener("submit", (event) => { event.preventDefault(); load(false); });
  $("audit-more").addEventListener("click", () => load(true));
  $("f-user").addEventListener("input", () => {
    clearTimeout(typing);
    const typed = $("f-user").value.trim();
    if (typed) typing = setTimeout(() => suggestUsers(typed).catch(() => null), 250);
  });
}
