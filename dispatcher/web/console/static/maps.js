// Leaflet maps of the console (the alert's, the overview's) and their written fallback.
// Without a tile URL, or once no tile could load, a map is replaced by the place written out,
// with an "Ouvrir dans une carte" link, never left as a grey box.

import { $, osmLink } from "./dom.js";

const tiles = { url: "", failed: false, listeners: [] };

/** The configured tile URL ("" = no map background). */
export function configureTiles(url) { tiles.url = url || ""; }

/** True when maps can be drawn: Leaflet loaded, a tile URL, and tiles not known to fail. */
export function mapsAvailable() { return Boolean(window.L && tiles.url && !tiles.failed); }

/** Call `listener` when tiles are found not to load (every map then shows its fallback). */
export function onTilesFailed(listener) { tiles.listeners.push(listener); }

/** A Leaflet map on `box` with the configured tiles. */
export function newMap(box) {
  const map = window.L.map(box, { attributionControl: true });
  const layer = window.L.tileLayer(tiles.url, { maxZoom: 19, attribution: "© contributeurs OpenStreetMap" });
  let loaded = 0;
  layer.on("tileload", () => { loaded += 1; });
  layer.on("tileerror", () => {
    if (loaded || tiles.failed) return;
    tiles.failed = true;
    for (const listener of tiles.listeners) listener();
  });
  layer.addTo(map);
  return map;
}

// ---- the alert's own map (detail pane) ----------------------------------------------
const detail = { map: null, marker: null, circle: null, loc: null };

function showDetailFallback(on) {
  $("map").hidden = on;
  $("map-fallback").hidden = !on;
}

onTilesFailed(() => { if (detail.loc) showDetailFallback(true); });

/** The alert's location on its map, or written out; the "Ouvrir dans une carte" link is always there. */
export function renderDetailMap(loc) {
  detail.loc = loc && loc.point ? loc : null;
  if (!detail.loc) {
    $("map").hidden = true; $("map-fallback").hidden = true; $("map-open").hidden = true;
    return;
  }
  const addr = loc.address;
  $("map-fallback-address").textContent = (addr && addr.label) || loc.description || "";
  $("map-fallback-coords").textContent = `Coordonnées : ${loc.point.lat.toFixed(5)}, ${loc.point.lon.toFixed(5)}`;
  $("map-link").href = osmLink(loc.point);
  $("map-open").hidden = false;
  if (!mapsAvailable()) { showDetailFallback(true); return; }
  showDetailFallback(false);
  const here = [loc.point.lat, loc.point.lon];
  if (!detail.map) detail.map = newMap($("map"));
  detail.map.setView(here, 17);
  if (detail.marker) detail.marker.remove();
  if (detail.circle) detail.circle.remove();
  detail.marker = window.L.marker(here).addTo(detail.map);
  detail.circle = loc.accuracy_m
    ? window.L.circle(here, { radius: loc.accuracy_m, color: "#c4161c" }).addTo(detail.map) : null;
  setTimeout(() => detail.map.invalidateSize(), 0);
}
