// Balises: state, link, battery, last seen; revocation after a confirmation step.
import { $, apiPage, badge, cell, confirmAction, el, parisTime, send } from "./common.js";

const KIND_FR = { button: "bouton fixe", pocket: "bouton de poche", bracelet: "bracelet" };

function linkBadge(d) {
  if (d.state === "revoked") return badge("révoquée", "bad");
  if (!d.last_seen_at) return badge("jamais vue", "warn");
  return d.offline ? badge("hors ligne", "bad") : badge("en ligne", "ok");
}

function battery(d) {
  if (d.battery_pct === null || d.battery_pct === undefined) return "—";
  return d.low_battery ? badge(`${d.battery_pct} % (faible)`, "warn") : `${d.battery_pct} %`;
}

function row(d) {
  const tr = el("tr");
  tr.dataset.id = d.device_id;
  const who = [d.practitioner_name, d.site_name].filter(Boolean).join(" · ");
  const action = el("button", "Révoquer");
  action.type = "button";
  action.className = "revoke";
  action.disabled = d.state === "revoked";
  action.addEventListener("click", () => revoke(d));
  const title = el("span");
  title.append(el("strong", d.label || d.device_id), el("br"), el("span", d.device_id, "muted small"));
  tr.append(
    cell("Balise", title),
    cell("Type", KIND_FR[d.kind] || d.kind),
    cell("Attribution", who || "—"),
    cell("État", d.state === "revoked" ? badge("révoquée", "bad") : badge("active", "ok")),
    cell("Liaison", linkBadge(d)),
    cell("Batterie", battery(d)),
    cell("Dernier signal", parisTime(d.last_seen_at)),
    cell("", action),
  );
  return tr;
}

async function revoke(d) {
  const ok = await confirmAction(
    "Révoquer la balise ?",
    `La balise « ${d.label || d.device_id} » (${d.device_id}) ne pourra plus déclencher d'alerte : ses messages seront refusés et le broker la déconnectera. `
      + "Pensez aussi à révoquer son certificat (vigie provision revoke). Cette action est enregistrée dans le journal d'audit.",
    "Révoquer définitivement",
  );
  if (!ok) return;
  try {
    await send("POST", `/api/devices/${encodeURIComponent(d.device_id)}/revoke`);
  } catch (error) {
    $("global-error").textContent = `Révocation : ${error.message}`;
    $("global-error").hidden = false;
  }
  await showDevices();
}

export async function showDevices() {
  const typed = $("devices-q").value.trim();
  const page = await apiPage(`/api/devices/health${typed ? `?q=${encodeURIComponent(typed)}` : ""}`);
  const health = page.rows;
  $("devices-more").hidden = page.total <= health.length;
  $("devices-more").textContent = `${health.length.toLocaleString("fr-FR")} balises affichées sur`
    + ` ${page.total.toLocaleString("fr-FR")}, celles hors ligne ou à batterie faible en premier : précisez la recherche.`;
  $("devices").tBodies[0].replaceChildren(...health.map(row));
  $("devices-empty").textContent = typed ? `Aucune balise ne correspond à « ${typed} ».` : "Aucune balise.";
  $("devices-empty").hidden = health.length > 0;
}

let typing = null;

/** The search field: the table found again a moment after the admin stops typing. */
export function initDevices() {
  $("devices-q").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(showDevices, 250);
  });
}
