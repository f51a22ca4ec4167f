// French labels for every domain value the console can display, and times in Europe/Paris.
// The API keeps its machine values (English enums); only what the operator reads is translated,
// here and nowhere else. An unknown value never shows raw: it falls back to a generic French word.

export const LABELS = {
  state: {
    received: "reçue", notifying: "en cours", duress: "SOUS CONTRAINTE", acknowledged: "prise en charge",
    resolved: "clôturée", cancelled: "annulée", false_alarm: "fausse alerte",
  },
  alertKind: { alert: "alerte", test: "test", drill: "exercice" },
  // Provider statuses of an SMS or a call (Twilio's), and the dispatcher's own.
  delivery: {
    pending: "en attente", sending: "en cours d'envoi", accepted: "accepté", scheduled: "programmé",
    queued: "accepté par l'opérateur télécom", sent: "envoyé", delivered: "remis", read: "lu",
    receiving: "en réception", received: "reçu", initiated: "appel lancé", ringing: "sonne",
    "in-progress": "appel en cours", answered: "décroché", completed: "appel terminé", failed: "échec",
    undelivered: "non remis", "no-answer": "pas de réponse", busy: "occupé", canceled: "annulé",
    cancelled: "annulé", unknown: "incertain (arrêt du dispatcher)",
  },
  channel: { sms: "SMS", voice: "appel" },
  purpose: {
    alert: "alerte", cancelled: "fin d'alerte (annulée par le praticien)", false_alarm: "fin d'alerte (fausse alerte)",
    resolved: "avis de clôture", duress_notice: "avis de contrainte", ack_notice: "avis de prise en charge",
    test: "test",
  },
  role: { admin: "administrateur", operator: "opérateur", practitioner: "praticien" },
  source: {
    gps: "GPS de la balise", home_visit: "visite à domicile déclarée", site: "lieu d'exercice",
    last_known: "dernière position connue", unknown: "inconnue", gnss: "GPS", phone: "téléphone",
  },
  gesture: { hold: "appui long", multi_press: "appuis répétés", keyboard: "clavier (simulation)" },
  deviceKind: { button: "bouton fixe", pocket: "bouton de poche", bracelet: "bracelet" },
  deviceState: { active: "active", revoked: "révoquée" },
  deviceStatus: { online: "en ligne", offline: "HORS LIGNE" },
  eventKind: {
    alarm: "alarme", provider: "opérateur télécom", offline: "hors ligne", low_battery: "batterie faible",
    online: "de nouveau en ligne",
  },
  siteKind: { cabinet: "cabinet", mmg: "maison médicale de garde", centre_sante: "centre de santé", other: "autre lieu" },
  // How an alert was acknowledged: SMS reply, key 1 during the call, the console, the responder's link.
  via: { sms: "SMS", voice: "appel", console: "console", link: "lien" },
  // A tier of the escalation view (escalation.js).
  tierStatus: {
    current: "en cours", alerted: "alerté", upcoming: "à venir", not_reached: "non atteint", empty: "sans destinataire",
  },
};

const FALLBACK = {
  state: "état inconnu", delivery: "état inconnu", channel: "autre canal", role: "autre rôle",
  source: "source inconnue", gesture: "geste inconnu", deviceKind: "balise", deviceState: "état inconnu",
  deviceStatus: "état inconnu", eventKind: "événement", siteKind: "lieu", via: "autre moyen",
  alertKind: "alerte", purpose: "message", tierStatus: "état inconnu",
};

/** The French label of a domain value; a generic French word for a value the table does not know. */
export function label(table, value) {
  if (value === null || value === undefined || value === "") return null;
  const known = LABELS[table];
  if (known && Object.hasOwn(known, value)) return known[value];
  return FALLBACK[table] || "inconnu";
}

// ---- times: always Europe/Paris, whatever the browser's zone ----------------------------
export const ZONE = "Europe/Paris";
const TIME = new Intl.DateTimeFormat("fr-FR", {
  timeZone: ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const HOUR_MINUTE = new Intl.DateTimeFormat("fr-FR", { timeZone: ZONE, hour: "2-digit", minute: "2-digit" });
const DATE_TIME = new Intl.DateTimeFormat("fr-FR", {
  timeZone: ZONE, day: "2-digit", month: "2-digit", year: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

const valid = (iso) => iso !== null && iso !== undefined && !Number.isNaN(new Date(iso).getTime());
/** 08:09:30, Paris time. */
export const parisTime = (iso) => (valid(iso) ? TIME.format(new Date(iso)) : "—");
/** 08:09, Paris time. */
export const parisHourMinute = (iso) => (valid(iso) ? HOUR_MINUTE.format(new Date(iso)) : "—");
/** 27/11/2026 08:09:30, Paris time. */
export const parisDateTime = (iso) => (valid(iso) ? DATE_TIME.format(new Date(iso)).replace(",", "") : "—");

// ---- timeline entries whose server text embeds a raw value -----------------------------
/** The French text of a timeline entry; entries carrying a machine value are told from their detail. */
export function timelineText(entry) {
  const d = entry.detail || {};
  if (entry.source === "event" && entry.kind === "received") {
    return `Alerte reçue de la balise (geste : ${label("gesture", d.gesture) || "inconnu"})`;
  }
  if (entry.source === "event" && entry.kind === "located") {
    return `Localisée (${label("source", d.source) || "source inconnue"}) : ${d.description || ""}`.trim();
  }
  return entry.text;
}
