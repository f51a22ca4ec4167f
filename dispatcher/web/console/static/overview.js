// The overview map: open alerts and open declared visits of the territory, each with the age of its
// position ("il y a 2 min", from the server's clock). The list under the map is the written fallback:
// it names every place with an "Ouvrir dans une carte" link, and stands alone when tiles fail.

import { api } from "./api.js";
import { ago, syncServer } from "./clock.js";
import { $, el, mapAnchor } from "./dom.js";
import { label, parisHourMinute } from "./labels.js";
import { mapsAvailable, newMap, onTilesFailed } from "./maps.js";

const ov = { map: null, layer: null, data: null, ticker: null, onPick: () => {} };

function showFallback(on) {
  $("ov-map").hidden = on;
  $("ov-fallback").hidden = !on;
}
onTilesFailed(() => { if (ov.data) showFallback(true); });

/** What a click on an alert of the overview does (the console opens its detail). */
export function onPickAlert(handler) { ov.onPick = handler; }

/** Read the overview again and draw it. */
export async function loadOverview() {
  try {
    const data = await api("/api/overview");
    syncServer(data.now);
    ov.data = data;
    render(data);
  } catch (error) {
    $("ov-count").textContent = `Carte d'ensemble illisible : ${error.message}`;
  }
}

/** Stop the ages' ticker (the overview is hidden). */
export function stopOverview() {
  clearInterval(ov.ticker);
  ov.ticker = null;
}

function alertText(a) {
  const who = a.practitioner_name || a.site_name || "balise";
  const state = a.kind === "drill" ? `EXERCICE — ${label("state", a.state)}` : label("state", a.state);
  return `Alerte — ${who} — ${state} — ${label("source", a.source)} : ${a.description}`;
}

function visitText(v) {
  const end = `fin prévue ${parisHourMinute(v.ends_at)}${v.overdue ? " (dépassée)" : ""}`;
  return `Visite — ${v.practitioner_name} — ${v.label} — ${end}`;
}

function item(kind, entry, text, extraClass) {
  const li = el("li", null, `ov-item ov-${kind}${extraClass ? ` ${extraClass}` : ""}`);
  li.dataset.id = entry.id;
  li.dataset.kind = kind;
  const age = el("span", null, "ov-age");
  age.dataset.at = entry.position_at;
  li.append(el("span", text, "ov-text"), " ", age, " ", mapAnchor(entry.point));
  if (kind === "alert") {
    li.tabIndex = 0;
    li.setAttribute("role", "button");
    li.onclick = (event) => { if (event.target.tagName !== "A") ov.onPick(entry.id); };
  }
  return li;
}

function tickAges() {
  for (const span of document.querySelectorAll("#ov-list .ov-age")) {
    span.textContent = `position ${ago(span.dataset.at)}`;
  }
}

function render(data) {
  const items = [
    ...data.alerts.map((a) => item("alert", a, alertText(a), a.needs_attention ? "flag" : "")),
    ...data.visits.map((v) => item("visit", v, visitText(v), v.overdue ? "flag overdue" : "")),
  ];
  $("ov-list").replaceChildren(...items);
  $("ov-empty").hidden = items.length > 0;
  const missing = data.without_position ? ` — ${data.without_position} sans position` : "";
  $("ov-count").textContent = `${data.alerts.length} alerte(s) ouverte(s), ${data.visits.length} visite(s) en cours${missing}`;
  tickAges();
  clearInterval(ov.ticker);
  ov.ticker = setInterval(tickAges, 5000);
  drawMap(data);
}

// Tooltips are DOM nodes: Leaflet reads a string as HTML, and names and addresses come from outside.
function drawMap(data) {
  const points = [...data.alerts, ...data.visits];
  const drawable = mapsAvailable() && points.length > 0;
  $("ov-map").hidden = !drawable;
  $("ov-fallback").hidden = drawable || points.length === 0;
  if (!drawable) return;
  if (!ov.map) ov.map = newMap($("ov-map"));
  if (ov.layer) ov.layer.remove();
  ov.layer = window.L.layerGroup().addTo(ov.map);
  for (const a of data.alerts) {
    window.L.circleMarker([a.point.lat, a.point.lon], { radius: 9, color: "#c4161c", fillOpacity: 0.8 })
      .bindTooltip(el("span", alertText(a))).on("click", () => ov.onPick(a.id)).addTo(ov.layer);
  }
  for (const v of data.visits) {
    window.L.circleMarker([v.point.lat, v.point.lon], { radius: 7, color: "#1f4fbf", fillOpacity: 0.6 })
      .bindTooltip(el("span", visitText(v))).addTo(ov.layer);
  }
  const bounds = window.L.latLngBounds(points.map((p) => [p.point.lat, p.point.lon]));
  setTimeout(() => { ov.map.invalidateSize(); ov.map.fitBounds(bounds, { padding: [30, 30], maxZoom: 15 }); }, 0);
}
