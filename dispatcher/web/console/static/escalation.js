// The escalation view of the selected alert: its plan's tiers, who each one reached and how the
// messages fared, who took the alert and how, and a live countdown to the next tier.
// The countdown runs from the server's due time and the server's `now` (clock.js), never from the
// browser's clock alone; the view is re-read whenever the alert changes (WebSocket push).

import { api } from "./api.js";
import { duration, secondsUntil, syncServer } from "./clock.js";
import { $, el } from "./dom.js";
import { label } from "./labels.js";

const FAILED = new Set(["failed", "undelivered", "no-answer", "busy", "canceled"]);
const view = { alertId: null, data: null, ticker: null, refetchAt: 0 };

/** Read and show the escalation of `alertId` (null: clear the view). */
export async function loadEscalation(alertId) {
  view.alertId = alertId;
  if (!alertId) { render(null); return; }
  try {
    const data = await api(`/api/alerts/${encodeURIComponent(alertId)}/escalation`);
    if (alertId !== view.alertId) return; // another alert was opened meanwhile
    syncServer(data.now);
    render(data);
  } catch (error) {
    $("esc-status").textContent = `Escalade illisible : ${error.message}`;
  }
}

/** "palier 2", "palier 1 (2e tour)", "relance du palier 3". */
export function stepName(next) {
  const tier = `palier ${next.tier + 1}`;
  if (next.renotify) return `relance du ${tier}`;
  return next.round > 0 ? `${tier} (${next.round + 1}e tour)` : tier;
}

function render(data) {
  view.data = data;
  clearInterval(view.ticker);
  view.ticker = null;
  $("escalation").hidden = !data;
  if (!data) return;
  $("esc-status").textContent = statusText(data);
  $("esc-tiers").replaceChildren(...data.tiers.map((tier) => tierItem(tier, data)));
  const next = $("esc-next");
  next.hidden = !data.next;
  if (data.next) {
    next.dataset.tier = String(data.next.tier + 1);
    tick();
    view.ticker = setInterval(tick, 250);
  }
}

function tick() {
  const data = view.data;
  if (!data || !data.next) return;
  const left = secondsUntil(data.next.due_at);
  $("esc-next").textContent = left > 0.5 ? `${stepName(data.next)} dans ${duration(left)}`
    : `${stepName(data.next)} imminent`;
  // The push of the tier's change normally arrives first; if it got lost, read the view again.
  if (left < -3 && performance.now() > view.refetchAt) {
    view.refetchAt = performance.now() + 3000;
    loadEscalation(view.alertId);
  }
}

function statusText(d) {
  if (d.acked_by) return `Prise en charge par ${d.acked_by} (${label("via", d.acked_via)})`;
  if (d.taken_over_by) return `Prise en main manuelle par ${d.taken_over_by} : escalade automatique arrêtée`;
  if (!d.tiers.length) return "Aucun palier : prise en charge manuelle par les opérateurs";
  if (d.running && d.renotifying) return `Escalade épuisée : le palier ${d.tier + 1} est relancé jusqu'à une prise en charge`;
  if (d.running) return `Palier ${d.tier + 1} alerté${d.round ? ` (${d.round + 1}e tour)` : ""}, en attente d'une prise en charge`;
  return `Escalade arrêtée (${label("state", d.state)})`;
}

function deliveryText(d) {
  const round = d.round ? ` (tour ${d.round + 1})` : "";
  const error = d.error ? ` — ${d.error}` : "";
  return `${label("channel", d.channel)}${round} : ${label("delivery", d.status)}${error}`;
}

function contactItem(contact, tier, data) {
  const li = el("li", null, contact.acknowledged ? "acked" : "");
  const who = el("span", contact.unit_name ? `${contact.name} (${contact.unit_name})` : contact.name, "who");
  const phone = el("a", contact.phone);
  phone.href = `tel:${contact.phone}`;
  li.append(who, " ", phone, " ", el("span", contact.channels.map((c) => label("channel", c)).join(" + "), "muted"));
  const failed = contact.deliveries.some((d) => FAILED.has(d.status));
  const text = contact.deliveries.length ? contact.deliveries.map(deliveryText).join(" · ")
    : tier.status === "upcoming" ? "pas encore alerté" : "non alerté";
  li.append(el("div", text, failed ? "deliveries flag" : "deliveries"));
  if (contact.acknowledged) li.append(el("div", `a pris en charge (${label("via", data.acked_via)})`, "ack"));
  return li;
}

function tierItem(tier, data) {
  const li = el("li", null, `tier tier-${tier.status}`);
  li.dataset.tier = String(tier.index + 1);
  li.dataset.status = tier.status;
  const head = el("div", null, "tier-head");
  head.append(el("strong", `Palier ${tier.index + 1}`), " ",
    el("span", label("tierStatus", tier.status), `badge tier-badge-${tier.status}`), " ",
    el("span", `attente ${duration(tier.ack_timeout_s)}`, "muted"));
  const contacts = el("ul", null, "tier-contacts");
  contacts.append(...tier.contacts.map((c) => contactItem(c, tier, data)));
  li.append(head, contacts);
  return li;
}
