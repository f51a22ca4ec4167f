// DOM helpers shared by the console's views. Every string from the server goes through textContent.

export const $ = (id) => document.getElementById(id);

export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

/** A table cell that names its column, for tables shown as cards on a phone (console.css). */
export function cell(column, text, className) {
  const td = el("td", text, className);
  td.dataset.label = column;
  return td;
}

/** "Ouvrir dans une carte": OpenStreetMap at the point (no tile needed on our side). */
export function osmLink(point) {
  const lat = point.lat.toFixed(5), lon = point.lon.toFixed(5);
  return `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=17/${lat}/${lon}`;
}

export function mapAnchor(point, text = "Ouvrir dans une carte") {
  const a = el("a", text);
  a.href = osmLink(point);
  a.target = "_blank";
  a.rel = "noopener";
  return a;
}
